using Vso.Transport.Wire;

namespace Vso.Transport.Interface;

/// <summary>
/// IPv4 → Ethernet address mappings learned by ARP (RFC 826), each valid for a fixed time, plus the
/// state of resolutions in progress so requests are retried at a bounded rate and given up after a while.
/// </summary>
internal sealed class ArpCache
{
    /// <summary>Most entries held (Linux's default gc_thresh3 is 1024 as well).</summary>
    public const int DefaultCapacity = 1024;

    private readonly Dictionary<Ipv4Address, Entry> _entries = [];
    private readonly long _lifetime;
    private readonly long _retryInterval;
    private readonly int _maxRequests;
    private readonly int _capacity;
    private long _lastSweepAt = long.MinValue;

    public ArpCache(TimeSpan lifetime, TimeSpan retryInterval, int maxRequests, int capacity = DefaultCapacity)
    {
        _lifetime = lifetime.Ticks / 10;
        _retryInterval = retryInterval.Ticks / 10;
        _maxRequests = maxRequests;
        _capacity = capacity;
    }

    public int Count => _entries.Count;

    public bool TryGet(Ipv4Address address, long now, out MacAddress mac) => TryGet(address, now, out mac, out _);

    /// <summary>
    /// A valid mapping, and whether to confirm it now: in the last quarter of its life a mapping in use is
    /// re-asked (at most once per retry interval) so that it is renewed before it expires and traffic to a
    /// live neighbour never stalls on an expired entry (Linux's neighbour PROBE state does the same).
    /// </summary>
    public bool TryGet(Ipv4Address address, long now, out MacAddress mac, out bool refreshDue)
    {
        refreshDue = false;
        if (_entries.TryGetValue(address, out var e) && e.Resolved && now < e.ExpiresAt)
        {
            mac = e.Mac;
            if (e.ExpiresAt - now < _lifetime / 4 && now - e.LastRequestAt >= _retryInterval)
            {
                _entries[address] = e with { LastRequestAt = now };
                refreshDue = true;
            }

            return true;
        }

        mac = default;
        return false;
    }

    /// <summary>Records a mapping; returns true when it is new or changed (waiting senders should retry).</summary>
    public bool Learn(Ipv4Address address, MacAddress mac, long now)
    {
        // Fix: the table grew without bound (one entry per spoofed ARP sender); a full table learns nothing new.
        if (!HasRoomFor(address, now))
        {
            return false;
        }

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

        // Fix: the table grew without bound (one entry per spoofed source we answered); a full table resolves nothing new.
        if (!HasRoomFor(address, now))
        {
            return false;
        }

        _entries[address] = new Entry(default, 0, Resolved: false, LastRequestAt: now, Requests: 1);
        return true;
    }

    /// <summary>
    /// Whether a new entry for <paramref name="address"/> fits. When the table is full, drops (at most once per
    /// retry interval, so a flood cannot make every packet pay for a sweep) expired mappings and resolutions not
    /// asked for since the last retry interval; live mappings are never evicted for a newcomer.
    /// </summary>
    private bool HasRoomFor(Ipv4Address address, long now)
    {
        if (_entries.Count < _capacity || _entries.ContainsKey(address))
        {
            return true;
        }

        if (now - _lastSweepAt >= _retryInterval)
        {
            _lastSweepAt = now;
            foreach (var (key, e) in _entries)
            {
                if (e.Resolved ? now >= e.ExpiresAt : now - e.LastRequestAt >= _retryInterval)
                {
                    _entries.Remove(key);
                }
            }
        }

        return _entries.Count < _capacity;
    }

    private readonly record struct Entry(MacAddress Mac, long ExpiresAt, bool Resolved, long LastRequestAt, int Requests);
}
