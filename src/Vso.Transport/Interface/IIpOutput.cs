using Vso.MemoryPinning;
using Vso.Transport.Wire;

namespace Vso.Transport.Interface;

/// <summary>
/// The way out for a transport protocol: one IPv4 datagram at a time, built in place in the link's next frame.
/// <see cref="TryBegin"/> a datagram, <see cref="Append"/> its linear bytes (transport header, copied payload), then
/// <see cref="AppendGathered"/> pinned payload read by the link at send time, and <see cref="Commit"/> (or
/// <see cref="Cancel"/>). The port writes the IPv4 and link headers; only one datagram is built at a time.
/// Engine thread only.
/// </summary>
internal interface IIpOutput
{
    /// <summary>Our IPv4 address: the source of every datagram.</summary>
    Ipv4Address Address { get; }

    /// <summary>Largest IPv4 datagram (header included) a frame carries.</summary>
    int Mtu { get; }

    /// <summary>The most pieces <see cref="AppendGathered"/> may add to one datagram.</summary>
    int MaxGatherPieces { get; }

    /// <summary>TCP payload the link takes as one super-segment (generic segmentation offload); 0 when it cannot.</summary>
    int MaxOffloadPayload { get; }

    /// <summary>The neighbour a datagram to <paramref name="destination"/> goes to: itself on the subnet, else the gateway.</summary>
    Ipv4Address NextHop(Ipv4Address destination);

    /// <summary>Whether <paramref name="destination"/> has a next hop at all: on our subnet, or anywhere behind a gateway.</summary>
    bool CanReach(Ipv4Address destination);

    /// <summary>
    /// Starts a datagram of <paramref name="protocol"/> to <paramref name="destination"/>. Returns false (and asks ARP)
    /// when the next hop's hardware address is not known yet; nothing is begun then.
    /// </summary>
    bool TryBegin(Ipv4Address destination, IpProtocol protocol);

    /// <summary>
    /// Adds <paramref name="length"/> bytes to the datagram's linear part and returns them for the caller to write. They stay
    /// writable until <see cref="Commit"/> (a header's checksum is filled once its payload is known). Throws when the frame
    /// has no room left: the caller sized the datagram beyond the MTU.
    /// </summary>
    Span<byte> Append(int length);

    /// <summary>
    /// Adds the pinned range of <paramref name="lease"/> after the linear part; the link reads it when it sends the frame,
    /// and the lease ends then (also when the datagram is cancelled). Throws when the datagram already holds
    /// <see cref="MaxGatherPieces"/> pieces: the caller did not clamp the datagram to the gather limit.
    /// </summary>
    void AppendGathered(PinLease lease);

    /// <summary>
    /// Completes the datagram: IPv4 header (total length from the linear and gathered bytes) and link header.
    /// <paramref name="gsoSize"/> &gt; 0 (only when <see cref="MaxOffloadPayload"/> is not 0): a TCP super-segment that the link
    /// cuts into segments of that many payload bytes; its checksum field holds the pseudo-header sum only.
    /// </summary>
    void Commit(int gsoSize = 0);

    /// <summary>Abandons the datagram being built.</summary>
    void Cancel();
}
