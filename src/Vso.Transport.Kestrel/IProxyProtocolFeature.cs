using System.Net;

namespace Vso.Transport.Kestrel;

/// <summary>
/// A connection feature of the Vso transport, present when the listener expects the PROXY protocol (Vso:ProxyProtocol):
/// what the balancer's header said. The connection's RemoteEndPoint and LocalEndPoint are already the header's; read the
/// rest from middleware with <c>context.Features.Get&lt;IProxyProtocolFeature&gt;()</c>.
/// </summary>
public interface IProxyProtocolFeature
{
    /// <summary>1 (text header) or 2 (binary header).</summary>
    int Version { get; }

    /// <summary>
    /// True when the header carried the client's TCP end points (v1 TCP4/TCP6, v2 PROXY over TCP). False for a v2 LOCAL
    /// command (a balancer's health check), a v1 UNKNOWN line and the v2 families the transport does not use: the
    /// connection then keeps its own end points.
    /// </summary>
    bool IsProxied { get; }

    /// <summary>The TCP peer that sent the header: the balancer.</summary>
    EndPoint? BalancerEndPoint { get; }

    /// <summary>
    /// The v2 header's type-length-values in order (proxy-protocol.txt §2.2.1-2.2.8), each as its type byte (0x01 ALPN,
    /// 0x02 AUTHORITY, 0x03 CRC32C, 0x04 NOOP, 0x05 UNIQUE_ID, 0x20 SSL, 0x30 NETNS, 0xE0-0xEF custom) and its value as
    /// sent; empty for v1.
    /// </summary>
    IReadOnlyList<KeyValuePair<byte, ReadOnlyMemory<byte>>> Tlvs { get; }
}
