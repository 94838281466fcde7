using System.Runtime.CompilerServices;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Links;

/// <summary>
/// The virtio_net_hdr both links write (AF_PACKET, TAP) and the checksum TAP finishes for frames the kernel hands over with
/// VIRTIO_NET_HDR_F_NEEDS_CSUM: the TCP checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL), and after
/// finishing, the stack's own check (RFC 9293 §3.1) accepts the segment, MTU-sized or a 64 KiB super-frame alike.
/// </summary>
public sealed class VirtioNetHeaderTests
{
    private static readonly Ipv4Address Source = Ipv4Address.Parse("198.18.0.1");
    private static readonly Ipv4Address Destination = Ipv4Address.Parse("198.18.0.2");

    [Fact]
    public void Layout_is_the_kernels_ten_bytes_and_a_super_segment_names_its_TCP_checksum()
    {
        Assert.Equal(10, Unsafe.SizeOf<VirtioNetHeader>());
        var h = VirtioNetHeader.TcpV4(66, 1448);
        Assert.Equal(VirtioNetHeader.NeedsChecksum, h.Flags);
        Assert.Equal(VirtioNetHeader.GsoTcpV4, h.GsoType);
        Assert.Equal(66, h.HeaderLength);
        Assert.Equal(1448, h.GsoSize);
        Assert.Equal(14 + 20, h.ChecksumStart);
        Assert.Equal(16, h.ChecksumOffset);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(1448)]
    [InlineData(1449)]
    [InlineData(65_535 - 20 - 32)]
    public void A_partial_checksum_finished_here_passes_the_stacks_check(int payload)
    {
        var frame = PartialFrame(payload, seed: payload);
        var tcp = frame.AsSpan(14 + 20);
        Assert.Equal(WireStatus.BadChecksum, TcpSegment.TryParse(tcp, Source, Destination, out _)); // unfinished: refused

        Assert.True(VirtioNetHeader.TryFinishChecksum(frame, 14 + 20, 16));
        Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(tcp, Source, Destination, out var segment));
        Assert.Equal(payload, segment.Payload.Length);

        // The finished sum covers every byte: one changed payload byte is caught.
        if (payload > 0)
        {
            tcp[^1] ^= 0x40;
            Assert.Equal(WireStatus.BadChecksum, TcpSegment.TryParse(tcp, Source, Destination, out _));
        }
    }

    [Theory]
    [InlineData(14 + 20, 100)]
    [InlineData(14 + 20 + 32 + 9, 0)]
    [InlineData(200, 0)]
    public void Offsets_outside_the_frame_are_refused_and_nothing_is_written(int start, int offset)
    {
        var frame = PartialFrame(10, seed: 1);
        var before = frame.ToArray();
        Assert.False(VirtioNetHeader.TryFinishChecksum(frame, start, offset));
        Assert.Equal(before, frame);
    }

    [Theory]
    [InlineData(1448)]
    [InlineData(65_535 - 20 - 32)]
    public void A_GRO_merged_frame_marked_checked_gets_its_checksum_written_anew(int payload)
    {
        // GRO merged checked segments (DATA_VALID) and kept the first one's checksum, wrong for the whole.
        var frame = PartialFrame(payload, seed: payload);
        WriteIpv4Header(frame, 20 + 32 + payload);
        var tcp = frame.AsSpan(14 + 20);
        tcp[16] ^= 0x5A;
        var header = new VirtioNetHeader { Flags = VirtioNetHeader.DataValid, GsoType = VirtioNetHeader.GsoTcpV4, GsoSize = 1448 };

        Assert.Null(VirtioNetHeader.ApplyReceived(header, frame, out var superFrame, out var written));

        Assert.True(superFrame);
        Assert.True(written);
        Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(tcp, Source, Destination, out var segment));
        Assert.Equal(payload, segment.Payload.Length);
    }

    [Fact]
    public void A_checked_frame_that_is_not_a_super_frame_is_taken_as_it_is()
    {
        var frame = PartialFrame(100, seed: 3);
        var before = frame.ToArray();
        var header = new VirtioNetHeader { Flags = VirtioNetHeader.DataValid };
        Assert.Null(VirtioNetHeader.ApplyReceived(header, frame, out var superFrame, out var written));
        Assert.False(superFrame);
        Assert.False(written);
        Assert.Equal(before, frame);
    }

    [Theory]
    [InlineData(VirtioNetHeader.GsoTcpV4, 0, "neither NEEDS_CSUM nor DATA_VALID")]
    [InlineData(3, VirtioNetHeader.NeedsChecksum, "GSO type other than TCPv4")] // VIRTIO_NET_HDR_GSO_UDP
    public void Super_frames_the_link_cannot_check_are_refused_with_a_reason(byte gsoType, byte flags, string reason)
    {
        var frame = PartialFrame(3000, seed: 4);
        WriteIpv4Header(frame, 20 + 32 + 3000);
        var header = new VirtioNetHeader { Flags = flags, GsoType = gsoType, ChecksumStart = 14 + 20, ChecksumOffset = 16 };
        Assert.Contains(reason, VirtioNetHeader.ApplyReceived(header, frame, out _, out _), StringComparison.Ordinal);
    }

    private static void WriteIpv4Header(Span<byte> frame, int totalLength)
    {
        frame[12] = 0x08;                       // EtherType IPv4
        var ip = frame[14..];
        ip[0] = 0x45;
        ip[2] = (byte)(totalLength >> 8);
        ip[3] = (byte)totalLength;
        ip[8] = 64;
        ip[9] = (byte)IpProtocol.Tcp;
        Source.Write(ip[12..]);
        Destination.Write(ip[16..]);
    }

    /// <summary>Ethernet, IPv4 and a TCP header with a timestamp option, <paramref name="payload"/> bytes, the checksum field as the kernel leaves it for NEEDS_CSUM.</summary>
    private static byte[] PartialFrame(int payload, int seed)
    {
        const int tcpHeader = 32;
        var frame = new byte[14 + 20 + tcpHeader + payload];
        new Random(seed).NextBytes(frame.AsSpan(14 + 20 + tcpHeader));
        var tcp = frame.AsSpan(14 + 20);
        tcp[0] = 0x1F; tcp[1] = 0x90;           // source port 8080
        tcp[2] = 0xC3; tcp[3] = 0x50;           // destination port 50000
        tcp[7] = 1;                             // sequence number 1
        tcp[12] = (tcpHeader / 4) << 4;
        tcp[13] = (byte)(TcpFlags.Ack | TcpFlags.Psh);
        tcp[14] = 0xFF;                         // window
        tcp[20] = 1; tcp[21] = 1;               // NOP NOP
        tcp[22] = 8; tcp[23] = 10;              // timestamps
        TcpChecksum.WritePseudoHeaderSum(tcp, Source, Destination, tcpHeader + payload);
        return frame;
    }
}
