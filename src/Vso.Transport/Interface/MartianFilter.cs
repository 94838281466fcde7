using Vso.Transport.Wire;

namespace Vso.Transport.Interface;

/// <summary>
/// Refuses IPv4 datagrams whose addresses cannot be genuine on our link ("martians"): RFC 1122
/// §3.2.1.3 says a host must silently discard a datagram whose source is not a valid unicast address
/// (this network, loopback, broadcast, multicast), and RFC 1812 §5.3.7 lists the same classes plus
/// 240.0.0.0/4. For TCP, RFC 1122 §4.2.3.10 adds that a segment addressed to a broadcast or multicast
/// address must be discarded, and a segment from our own address and port to themselves ("land") is a
/// known attack. Each refusal names its reason, so the caller can count them apart.
/// A value type of three words: one per interface, no allocation.
/// </summary>
internal readonly struct MartianFilter
{
    private const uint ThisNetworkBlock = 0x0000_0000; // 0.0.0.0/8
    private const uint LoopbackBlock = 0x7F00_0000;    // 127.0.0.0/8
    private const uint MulticastBlock = 0xE000_0000;   // 224.0.0.0/4
    private const uint ReservedBlock = 0xF000_0000;    // 240.0.0.0/4

    private readonly uint _mask;

    public MartianFilter(Ipv4Address address, int prefixLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(prefixLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(prefixLength, 32);
        Address = address;
        PrefixLength = prefixLength;
        _mask = prefixLength == 0 ? 0 : uint.MaxValue << (32 - prefixLength);
    }

    public Ipv4Address Address { get; }

    public int PrefixLength { get; }

    /// <summary>
    /// Whether the subnet has a network and a broadcast address: not /31 (RFC 3021, both addresses are
    /// hosts) nor /32 (a single host).
    /// </summary>
    public bool HasBroadcast => PrefixLength <= 30;

    /// <summary>The subnet's network address (host part all zeros).</summary>
    public Ipv4Address NetworkAddress => new(Address.Value & _mask);

    /// <summary>The subnet's directed broadcast address (host part all ones, RFC 1122 §3.2.1.3 (d)).</summary>
    public Ipv4Address DirectedBroadcast => new(Address.Value | ~_mask);

    /// <summary>
    /// True when <paramref name="peer"/> is in our subnet, so reachable without a gateway. With no
    /// gateway configured, a peer for which this is false cannot be answered (no route), whatever its
    /// datagram claims.
    /// </summary>
    public bool IsOnLink(Ipv4Address peer) => ((peer.Value ^ Address.Value) & _mask) == 0;

    /// <summary>
    /// The reason to discard a datagram from <paramref name="source"/> to <paramref name="destination"/>,
    /// or None. Broadcast and multicast destinations pass: whether to answer them is the protocol's
    /// choice (an ICMP echo to broadcast may be ignored, RFC 1122 §3.2.2.6).
    /// </summary>
    public MartianReason Classify(Ipv4Address source, Ipv4Address destination)
    {
        var reason = ClassifySource(source);
        return reason != MartianReason.None ? reason : ClassifyDestination(destination);
    }

    /// <summary>
    /// <see cref="Classify"/> for a TCP segment, which also refuses a land segment and broadcast and
    /// multicast destinations (RFC 1122 §4.2.3.10: TCP is unicast only).
    /// </summary>
    public MartianReason ClassifyTcp(Ipv4Address source, ushort sourcePort, Ipv4Address destination, ushort destinationPort)
    {
        if (source == destination && sourcePort == destinationPort)
        {
            return MartianReason.Land;
        }

        var reason = Classify(source, destination);
        if (reason != MartianReason.None)
        {
            return reason;
        }

        if (destination == Ipv4Address.Broadcast)
        {
            return MartianReason.LimitedBroadcast;
        }

        if (InBlock(destination, MulticastBlock, 4))
        {
            return MartianReason.Multicast;
        }

        if (HasBroadcast && destination == DirectedBroadcast)
        {
            return MartianReason.DirectedBroadcast;
        }

        return HasBroadcast && destination == NetworkAddress ? MartianReason.NetworkAddress : MartianReason.None;
    }

    /// <summary>The reason a source address cannot be genuine, or None (RFC 1122 §3.2.1.3, RFC 1812 §5.3.7).</summary>
    public MartianReason ClassifySource(Ipv4Address source)
    {
        if (InBlock(source, ThisNetworkBlock, 8))
        {
            return MartianReason.ThisNetwork;
        }

        if (InBlock(source, LoopbackBlock, 8))
        {
            return MartianReason.Loopback;
        }

        if (InBlock(source, MulticastBlock, 4))
        {
            return MartianReason.Multicast;
        }

        if (source == Ipv4Address.Broadcast)
        {
            return MartianReason.LimitedBroadcast;
        }

        if (InBlock(source, ReservedBlock, 4))
        {
            return MartianReason.Reserved;
        }

        if (source == Address)
        {
            return MartianReason.OwnAddress;
        }

        if (HasBroadcast && source == DirectedBroadcast)
        {
            return MartianReason.DirectedBroadcast;
        }

        return HasBroadcast && source == NetworkAddress ? MartianReason.NetworkAddress : MartianReason.None;
    }

    /// <summary>
    /// Destinations that are never valid on the wire whatever the protocol: this network, loopback, and
    /// 240.0.0.0/4 short of the limited broadcast (RFC 1812 §5.3.7).
    /// </summary>
    private static MartianReason ClassifyDestination(Ipv4Address destination)
    {
        if (InBlock(destination, ThisNetworkBlock, 8))
        {
            return MartianReason.ThisNetwork;
        }

        if (InBlock(destination, LoopbackBlock, 8))
        {
            return MartianReason.Loopback;
        }

        return destination != Ipv4Address.Broadcast && InBlock(destination, ReservedBlock, 4)
            ? MartianReason.Reserved
            : MartianReason.None;
    }

    private static bool InBlock(Ipv4Address address, uint block, int prefixLength) =>
        (address.Value >> (32 - prefixLength)) == (block >> (32 - prefixLength));
}
