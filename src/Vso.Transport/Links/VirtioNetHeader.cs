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

    /// <summary>
    /// Applies a received frame's header, for AF_PACKET and TAP alike: a TCPv4 super-frame may exceed the MTU (the stack
    /// takes it as one large segment, as the kernel's GRO would); a checksum left to the device (NEEDS_CSUM) is finished
    /// in place; a super-frame that GRO merged from segments the device had checked (DATA_VALID) carries only the first
    /// segment's checksum, so it is computed anew over the whole. Either way the stack's check of every TCP checksum
    /// holds. Null when the frame is taken, else why it is dropped.
    /// </summary>
    public static string? ApplyReceived(in VirtioNetHeader header, Span<byte> frame, out bool superFrame, out bool checksumWritten)
    {
        var gsoType = header.GsoType & ~GsoEcn;
        superFrame = gsoType == GsoTcpV4;
        checksumWritten = false;
        if (gsoType != GsoNone && !superFrame)
        {
            return "a GSO type other than TCPv4, which the link did not offer";
        }

        if ((header.Flags & NeedsChecksum) != 0)
        {
            if (!TryFinishChecksum(frame, header.ChecksumStart, header.ChecksumOffset))
            {
                return "checksum offsets outside the frame";
            }

            checksumWritten = true;
        }
        else if (superFrame)
        {
            if ((header.Flags & DataValid) == 0 || !TryRewriteTcpChecksum(frame))
            {
                return "a TCPv4 super-frame with neither NEEDS_CSUM nor DATA_VALID";
            }

            checksumWritten = true;
        }

        return null;
    }

    /// <summary>
    /// Writes the TCP checksum of an Ethernet + IPv4 + TCP frame anew over the TCP length its IPv4 header gives (RFC 9293
    /// §3.1). False if the frame is not TCP over IPv4 or its lengths do not fit.
    /// </summary>
    private static bool TryRewriteTcpChecksum(Span<byte> frame)
    {
        const int ip = EthernetFrame.HeaderLength;
        if (frame.Length < ip + Ipv4Packet.MinHeaderLength
            || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != 0x0800
            || frame[ip + 9] != (byte)IpProtocol.Tcp)
        {
            return false;
        }

        var headerLength = (frame[ip] & 0x0F) * 4;
        var totalLength = BinaryPrimitives.ReadUInt16BigEndian(frame[(ip + 2)..]);
        var tcpLength = totalLength - headerLength;
        if (headerLength < Ipv4Packet.MinHeaderLength || tcpLength < 20 || ip + totalLength > frame.Length)
        {
            return false;
        }

        var tcp = frame.Slice(ip + headerLength, tcpLength);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], 0);
        var sum = default(ChecksumAccumulator);
        TcpChecksum.AddPseudoHeader(ref sum, Ipv4Address.Read(frame[(ip + 12)..]), Ipv4Address.Read(frame[(ip + 16)..]), tcpLength);
        sum.Add(tcp);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], sum.Finish());
        return true;
    }
}
