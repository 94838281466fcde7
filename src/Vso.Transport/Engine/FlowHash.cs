using System.Buffers.Binary;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Engine;

/// <summary>
/// The one function that maps a TCP/IPv4 flow to a shard, shared by the stack (which shard owns a connection, which
/// source port an active open takes), the simulated multi-queue link and the kernel's PACKET_FANOUT_CBPF program
/// (<see cref="Links.FanoutProgram"/>, which computes the same value in classic BPF). Symmetric, so both directions of a
/// flow land on the same shard: the XOR of the two addresses and of the two ports, then a 32-bit integer finaliser
/// (Wellons' lowbias32: shifts, XORs and multiplications, all of which classic BPF's 32-bit ALU has) so that the low bits,
/// which <c>mod N</c> keeps, depend on every input bit. Not a secret: peers can steer their flows to a shard, as with
/// any RSS hash; each shard still has its own limits.
/// </summary>
internal static class FlowHash
{
    public const uint Multiplier1 = 0x7feb352d;

    public const uint Multiplier2 = 0x846ca68b;

    /// <summary>The 32-bit hash of a flow; the same for (a, pa, b, pb) and (b, pb, a, pa).</summary>
    public static uint Hash(uint addressA, ushort portA, uint addressB, ushort portB)
    {
        var x = addressA ^ addressB ^ (uint)(portA ^ portB);
        x ^= x >> 16;
        x *= Multiplier1;
        x ^= x >> 15;
        x *= Multiplier2;
        x ^= x >> 16;
        return x;
    }

    /// <summary>The shard of a connection among <paramref name="shardCount"/>.</summary>
    public static int ShardOf(in ConnectionId id, int shardCount) =>
        shardCount == 1 ? 0 : (int)(Hash(id.LocalAddress.Value, id.LocalPort, id.RemoteAddress.Value, id.RemotePort) % (uint)shardCount);

    /// <summary>
    /// The shard an Ethernet frame belongs to, and how to hand it over: an unfragmented IPv4 TCP segment to its flow's
    /// shard; an ICMP Destination Unreachable to the shard of the TCP flow it quotes (RFC 1122 §4.2.3.9: the error goes
    /// to the connection); ARP to every shard (each keeps its own cache); anything else to shard 0. Malformed frames go to
    /// shard 0, whose interface counts them. Reads only the headers; never throws.
    /// </summary>
    public static FrameRoute Route(ReadOnlySpan<byte> frame, int shardCount, out int shard)
    {
        shard = 0;
        if (frame.Length < EthernetFrame.HeaderLength)
        {
            return FrameRoute.Shard;
        }

        var etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        if (etherType == 0x0806)
        {
            return FrameRoute.Everyone;
        }

        if (etherType != 0x0800 || !TryFlowOfDatagram(frame[EthernetFrame.HeaderLength..], out var hash))
        {
            return FrameRoute.Shard;
        }

        shard = (int)(hash % (uint)shardCount);
        return FrameRoute.Shard;
    }

    /// <summary>
    /// The receive queue a multi-queue device puts a frame on, as the kernel's fanout program computes it
    /// (<see cref="Links.FanoutProgram"/>): an unfragmented IPv4 TCP segment by its flow, everything else 0.
    /// </summary>
    public static int QueueOf(ReadOnlySpan<byte> frame, int queueCount)
    {
        if (queueCount == 1 || frame.Length < EthernetFrame.HeaderLength || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != 0x0800)
        {
            return 0;
        }

        var ip = frame[EthernetFrame.HeaderLength..];
        return TryTransport(ip, out var protocol, out var payload) && protocol == 6 && TryPorts(ip, payload, out var hash)
            ? (int)(hash % (uint)queueCount)
            : 0;
    }

    /// <summary>The flow hash of an IPv4 datagram that carries TCP, or of the TCP datagram an ICMP error quotes.</summary>
    private static bool TryFlowOfDatagram(ReadOnlySpan<byte> ip, out uint hash)
    {
        hash = 0;
        if (!TryTransport(ip, out var protocol, out var payload))
        {
            return false;
        }

        if (protocol == 6)
        {
            return TryPorts(ip, payload, out hash);
        }

        // ICMP Destination Unreachable (type 3): 8 bytes of header, then the quoted IPv4 header and 8 bytes of its payload.
        if (protocol == 1 && payload.Length >= 8 && payload[0] == 3
            && TryTransport(payload[8..], out var quotedProtocol, out var quotedPayload) && quotedProtocol == 6)
        {
            return TryPorts(payload[8..], quotedPayload, out hash);
        }

        return false;
    }

    private static bool TryTransport(ReadOnlySpan<byte> ip, out byte protocol, out ReadOnlySpan<byte> payload)
    {
        protocol = 0;
        payload = default;
        if (ip.Length < 20 || (ip[0] >> 4) != 4)
        {
            return false;
        }

        var headerLength = (ip[0] & 0xf) * 4;

        // Fragments other than the first carry no ports; the kernel's program sends every fragment to shard 0 too.
        if (headerLength < 20 || ip.Length < headerLength || (BinaryPrimitives.ReadUInt16BigEndian(ip[6..]) & 0x1fff) != 0)
        {
            return false;
        }

        protocol = ip[9];
        payload = ip[headerLength..];
        return true;
    }

    private static bool TryPorts(ReadOnlySpan<byte> ip, ReadOnlySpan<byte> transport, out uint hash)
    {
        if (transport.Length < 4)
        {
            hash = 0;
            return false;
        }

        hash = Hash(
            BinaryPrimitives.ReadUInt32BigEndian(ip[12..]),
            BinaryPrimitives.ReadUInt16BigEndian(transport),
            BinaryPrimitives.ReadUInt32BigEndian(ip[16..]),
            BinaryPrimitives.ReadUInt16BigEndian(transport[2..]));
        return true;
    }
}

/// <summary>Where <see cref="FlowHash.Route"/> sends a frame.</summary>
internal enum FrameRoute
{
    /// <summary>To the one shard named.</summary>
    Shard,

    /// <summary>To every shard (ARP: each shard keeps its own neighbour cache).</summary>
    Everyone,
}
