using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// struct virtio_net_hdr (include/uapi/linux/virtio_net.h), the header PACKET_VNET_HDR (AF_PACKET) and IFF_VNET_HDR (TAP)
/// put before each frame: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset; little-endian on this host
/// (packet sockets always; TAP for a legacy, non-TUNSETVNETBE device on a little-endian machine).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal struct VirtioNetHeader
{
    /// <summary>VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum field holds the pseudo-header sum; sum from csum_start and store at csum_start + csum_offset.</summary>
    public const byte NeedsChecksum = 1;

    /// <summary>VIRTIO_NET_HDR_F_DATA_VALID: the kernel has already checked the checksum.</summary>
    public const byte DataValid = 2;

    public const byte GsoNone = 0;          // VIRTIO_NET_HDR_GSO_NONE
    public const byte GsoTcpV4 = 1;         // VIRTIO_NET_HDR_GSO_TCPV4
    public const byte GsoEcn = 0x80;        // VIRTIO_NET_HDR_GSO_ECN, or-ed into gso_type

    public byte Flags;
    public byte GsoType;
    public ushort HeaderLength;
    public ushort GsoSize;
    public ushort ChecksumStart;
    public ushort ChecksumOffset;

    /// <summary>A TCPv4 super-segment whose Ethernet, IPv4 and TCP headers take <paramref name="headerLength"/> bytes.</summary>
    public static VirtioNetHeader TcpV4(int headerLength, int segmentSize) => new()
    {
        Flags = NeedsChecksum,
        GsoType = GsoTcpV4,
        HeaderLength = (ushort)headerLength,
        GsoSize = (ushort)segmentSize,
        ChecksumStart = EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength,
        ChecksumOffset = 16,
    };

    /// <summary>
    /// Finishes a checksum the sender left to the device (NEEDS_CSUM, CHECKSUM_PARTIAL), as skb_checksum_help does: the field
    /// at <paramref name="start"/> + <paramref name="offset"/> holds the pseudo-header sum; the ones' complement of the sum
    /// from <paramref name="start"/> to the end of <paramref name="frame"/> replaces it. False if the field is outside the frame.
    /// </summary>
    public static bool TryFinishChecksum(Span<byte> frame, int start, int offset)
    {
        var field = start + offset;
        if (field + 2 > frame.Length)
        {
            return false;
        }

        var sum = default(ChecksumAccumulator);
        sum.Add(frame[start..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[field..], sum.Finish());
        return true;
    }
}
