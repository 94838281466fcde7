using Vso.Transport.Wire;

namespace Vso.Transport.Interface;

/// <summary>
/// A transport protocol above the interface (RFC 791 §3.1 "Protocol"): the interface hands it every datagram addressed to
/// us that carries its protocol number, and tells it when a neighbour becomes reachable. Registered with
/// <see cref="NetworkInterface.Register"/>; sends through <see cref="IIpOutput"/>. Engine thread only.
/// </summary>
internal interface ITransportProtocol
{
    /// <summary>The IPv4 protocol number this transport receives.</summary>
    IpProtocol Protocol { get; }

    /// <summary>One datagram for this protocol, addressed to us; the transport checks its own header.</summary>
    void OnDatagram(in Ipv4Packet datagram);

    /// <summary>A neighbour's hardware address became known (or changed): datagrams through it can leave now.</summary>
    void OnNeighborResolved(Ipv4Address neighbor);

    /// <summary>
    /// An ICMP error (RFC 792, RFC 1122 §3.2.2.1) whose quoted datagram carries this protocol and our address as its
    /// source; the outer datagram passed the martian filter. Must not throw. A transport without use for them ignores them.
    /// </summary>
    void OnIcmpError(in IcmpErrorMessage error)
    {
    }
}
