namespace Vso.Transport.Interface;

/// <summary>Why <see cref="MartianFilter"/> refused a datagram, one counter each; None means it passed.</summary>
internal enum MartianReason
{
    None,

    /// <summary>127.0.0.0/8 on the wire (RFC 1122 §3.2.1.3 (g): must not appear outside a host).</summary>
    Loopback,

    /// <summary>0.0.0.0/8, "this host on this network" (RFC 1122 §3.2.1.3 (a), (b)).</summary>
    ThisNetwork,

    /// <summary>A multicast source (RFC 1122 §3.2.1.3, RFC 1812 §5.3.7), or a multicast destination for TCP.</summary>
    Multicast,

    /// <summary>240.0.0.0/4 other than 255.255.255.255 (former class E, RFC 1812 §5.3.7).</summary>
    Reserved,

    /// <summary>255.255.255.255 as a source, or as a TCP destination.</summary>
    LimitedBroadcast,

    /// <summary>Our subnet's broadcast address as a source, or as a TCP destination.</summary>
    DirectedBroadcast,

    /// <summary>Our subnet's network address (host part all zeros, the old broadcast form of RFC 1122 §3.3.6).</summary>
    NetworkAddress,

    /// <summary>Our own address as the source: a spoofed datagram, since we never send to ourselves on the link.</summary>
    OwnAddress,

    /// <summary>A TCP segment from our own address and port to themselves (the "land" attack).</summary>
    Land,

    /// <summary>
    /// A source off our subnet while no gateway is configured: we have no route to answer it, so it gets no ARP
    /// request, no ARP cache slot and no state (RFC 1122 §3.3.1.1: off-net destinations go through a gateway).
    /// </summary>
    NoRoute,
}
