using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The PROXY protocol options of one transport, parsed once: the versions expected, on which ports, from which balancers
/// (proxy-protocol.txt §2: a receiver SHOULD accept headers only from trusted proxies) and how long a header may take.
/// </summary>
internal sealed class ProxyProtocolPolicy
{
    private readonly (uint Network, uint Mask)[] _trusted;
    private readonly HashSet<int> _ports;

    private ProxyProtocolPolicy(VsoProxyProtocol mode, (uint, uint)[] trusted, HashSet<int> ports, TimeSpan timeout)
    {
        Mode = mode;
        _trusted = trusted;
        _ports = ports;
        Timeout = timeout;
    }

    public VsoProxyProtocol Mode { get; }

    public TimeSpan Timeout { get; }

    /// <summary>The policy of validated options; null when the protocol is off.</summary>
    public static ProxyProtocolPolicy? From(VsoTransportOptions options)
    {
        if (options.ProxyProtocol == VsoProxyProtocol.None)
        {
            return null;
        }

        _ = TryParseTrusted(options.ProxyProtocolTrustedAddresses, out var trusted);
        _ = TryParsePorts(options.ProxyProtocolPorts, out var ports);
        return new ProxyProtocolPolicy(options.ProxyProtocol, trusted, ports, options.ProxyProtocolTimeout);
    }

    /// <summary>The versions the listener on <paramref name="port"/> expects: None for a port not listed.</summary>
    public VsoProxyProtocol ModeFor(int port) => _ports.Count == 0 || _ports.Contains(port) ? Mode : VsoProxyProtocol.None;

    /// <summary>Whether <paramref name="peer"/> (the connection's TCP peer) may send a header.</summary>
    public bool IsTrusted(IPEndPoint? peer)
    {
        if (peer is null || peer.Address.AddressFamily != AddressFamily.InterNetwork)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[4];
        _ = peer.Address.TryWriteBytes(bytes, out _);
        var address = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        foreach (var (network, mask) in _trusted)
        {
            if ((address & mask) == network)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Comma-separated IPv4 addresses or CIDR ranges; false at the first bad entry or when there is none.</summary>
    public static bool TryParseTrusted(string? text, out (uint Network, uint Mask)[] ranges)
    {
        var list = new List<(uint, uint)>();
        ranges = [];
        Span<byte> bytes = stackalloc byte[4];
        foreach (var entry in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = entry.Split('/');
            if (parts.Length > 2 || !IPAddress.TryParse(parts[0], out var ip) || ip.AddressFamily != AddressFamily.InterNetwork
                || parts[0].Count(c => c == '.') != 3)
            {
                return false;
            }

            var prefix = 32;
            if (parts.Length == 2 && (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > 32))
            {
                return false;
            }

            _ = ip.TryWriteBytes(bytes, out _);
            var mask = prefix == 0 ? 0u : uint.MaxValue << (32 - prefix);
            list.Add((BinaryPrimitives.ReadUInt32BigEndian(bytes) & mask, mask));
        }

        ranges = [.. list];
        return ranges.Length > 0;
    }

    /// <summary>Comma-separated ports 1-65535; empty for every port.</summary>
    public static bool TryParsePorts(string? text, out HashSet<int> ports)
    {
        ports = [];
        foreach (var entry in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(entry, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                return false;
            }

            ports.Add(port);
        }

        return true;
    }
}
