using Vso.Transport.Wire;

namespace Vso.Transport.Interface;

/// <summary>
/// IPv4 → Ethernet address mappings learned by ARP (RFC 826), each valid for a fixed time, plus the
/// state of resolutions in progress so requests are retried at a bounded rate and given up after a while.
/// </summary>
internal sealed class ArpCache
{
    private readonly Dictionary<Ipv4Address, Entry> _entries = [];
    private readonly long _lifetime;
    private readonly long _retryInterval;
    private readonly int _maxRequests;

    public ArpCache(TimeSpan lifetime, TimeSpan retryInterval, int maxRequests)
    {
        _lifetime = lifetime.Ticks / 10;
        _retryInterval = retryInterval.Ticks / 10;
        _maxRequests = maxRequests;
    }

    public int Count => _entries.Count;

    public bool TryGet(Ipv4Address address, long now, out MacAddress mac)
    {
        if (_entries.TryGetValue(address, out var e) && e.Resolved && now < e.ExpiresAt)
        {
            mac = e.Mac;
            return true;
        }

        mac = default;
        return false;
    }

    /// <summary>Records a mapping; returns true when it is new or changed (waiting senders should retry).</summary>
    public bool Learn(Ipv4Address address, MacAddress mac, long now)
    {
        var isNew = !_entries.TryGetValue(address, out var e) || !e.Resolved || e.Mac != mac || now >= e.ExpiresAt;
        _entries[address] = new Entry(mac, now + _lifetime, Resolved: true, LastRequestAt: 0, Requests: 0);
        return isNew;
    }

    /// <summary>Only update an existing entry (RFC 826 "merge" without "add" for requests not aimed at us).</summary>
    public bool Refresh(Ipv4Address address, MacAddress mac, long now) => _entries.ContainsKey(address) && Learn(address, mac, now);

    /// <summary>Whether a request for <paramref name="address"/> should go out now (rate limit and retry cap).</summary>
    public bool ShouldRequest(Ipv4Address address, long now)
    {
        if (_entries.TryGetValue(address, out var e) && !e.Resolved)
        {
            if (now - e.LastRequestAt < _retryInterval)
            {
                return false;
            }

            // After the retry budget, wait a full lifetime before asking again (the peer is gone).
            if (e.Requests >= _maxRequests && now - e.LastRequestAt < _lifetime)
            {
                return false;
            }

            var requests = e.Requests >= _maxRequests ? 1 : e.Requests + 1;
            _entries[address] = e with { LastRequestAt = now, Requests = requests };
            return true;
        }

        _entries[address] = new Entry(default, 0, Resolved: false, LastRequestAt: now, Requests: 1);
        return true;
    }

    private readonly record struct Entry(MacAddress Mac, long ExpiresAt, bool Resolved, long LastRequestAt, int Requests);
}
