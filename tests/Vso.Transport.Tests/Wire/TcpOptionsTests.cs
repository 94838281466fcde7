using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Wire;

public sealed class TcpOptionsTests
{
    private static readonly Ipv4Address A = Ipv4Address.Parse("198.18.0.1");
    private static readonly Ipv4Address B = Ipv4Address.Parse("198.18.0.2");

    [Fact]
    public void None_encodes_nothing_and_default_means_window_scale_zero()
    {
        Assert.Equal(0, TcpOptions.None.EncodedLength);
        Assert.Equal(-1, TcpOptions.None.WindowScale);
        Assert.Equal(4, default(TcpOptions).EncodedLength); // the pitfall None exists for: WS present, shift 0
    }

    [Fact]
    public void Syn_options_use_the_linux_layout()
    {
        var o = TcpOptions.None;
        o.Mss = 1460;
        o.SackPermitted = true;
        o.HasTimestamp = true;
        o.TsVal = 0x11223344;
        o.TsEcr = 0;
        o.WindowScale = 7;
        var header = new byte[60];
        int length = new TcpRepr { SourcePort = 1, DestinationPort = 2, SequenceNumber = 3, AcknowledgmentNumber = 4, Flags = TcpFlags.Syn, Window = 65535, Options = o }.Emit(header);
        Assert.Equal(40, length);
        Assert.Equal(0xA0, header[12]);
        byte[] expected = [2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 1, 3, 3, 7];
        Assert.Equal(expected, header.AsSpan(20, 20).ToArray());
    }

    [Fact]
    public void Sack_blocks_that_do_not_fit_are_left_out_from_the_end()
    {
        var o = TcpOptions.None;
        for (int i = 0; i < TcpOptions.MaxSackBlocks; i++)
        {
            o.SetSackBlock(i, new SackBlock((uint)(100 * i), (uint)((100 * i) + 50)));
        }

        Assert.Equal(4, o.SackBlockCount);
        Assert.Equal(36, o.EncodedLength); // RFC 2018 §3: four blocks alone

        o.HasTimestamp = true;
        Assert.Equal(40, o.EncodedLength); // three blocks with timestamps

        var segment = new byte[60];
        int length = new TcpRepr { SourcePort = 1, DestinationPort = 2, SequenceNumber = 3, AcknowledgmentNumber = 4, Flags = TcpFlags.Ack, Window = 100, Options = o }.Emit(segment);
        var sum = default(ChecksumAccumulator);
        TcpChecksum.Finish(segment, length, A, B, 0, sum);
        Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(segment.AsSpan(0, length), A, B, out var parsed));
        Assert.Equal(3, parsed.Options.SackBlockCount);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(o.GetSackBlock(i), parsed.Options.GetSackBlock(i));
        }
    }

    [Fact]
    public void Encoded_length_is_aligned_bounded_and_exactly_what_is_written()
    {
        for (int mask = 0; mask < 16; mask++)
        {
            for (int blocks = 0; blocks <= TcpOptions.MaxSackBlocks; blocks++)
            {
                var o = TcpOptions.None;
                o.Mss = (mask & 1) != 0 ? (ushort)536 : (ushort)0;
                o.WindowScale = (mask & 2) != 0 ? (sbyte)14 : (sbyte)-1;
                o.SackPermitted = (mask & 4) != 0;
                o.HasTimestamp = (mask & 8) != 0;
                o.SackBlockCount = blocks;

                int encoded = o.EncodedLength;
                Assert.Equal(0, encoded % 4);
                Assert.InRange(encoded, 0, TcpOptions.MaxLength);

                var header = new byte[80];
                header.AsSpan().Fill(0xCC);
                Assert.Equal(20 + encoded, new TcpRepr { SourcePort = 1, DestinationPort = 2, SequenceNumber = 3, AcknowledgmentNumber = 4, Flags = TcpFlags.Ack, Window = 100, Options = o }.Emit(header));
                Assert.Equal(0xCC, header[20 + encoded]);
            }
        }
    }

    [Fact]
    public void Sack_block_accessors_check_their_index()
    {
        var o = TcpOptions.None;
        Assert.Throws<ArgumentOutOfRangeException>(() => o.GetSackBlock(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => o.SetSackBlock(TcpOptions.MaxSackBlocks, default));
        o.SetSackBlock(1, new SackBlock(5, 6));
        Assert.Equal(2, o.SackBlockCount);
        Assert.Equal(new SackBlock(5, 6), o.GetSackBlock(1));
    }

    [Fact]
    public void Finish_checksum_zeroes_a_stale_checksum_field_first()
    {
        var segment = new byte[24];
        int length = new TcpRepr { SourcePort = 1, DestinationPort = 2, SequenceNumber = 3, AcknowledgmentNumber = 4, Flags = TcpFlags.Ack, Window = 100, Options = TcpOptions.None }.Emit(segment);
        byte[] payload = [9, 8, 7, 6];
        payload.CopyTo(segment, length);
        segment[16] = 0xAB;
        segment[17] = 0xCD;
        var sum = default(ChecksumAccumulator);
        sum.Add(payload);
        TcpChecksum.Finish(segment, length, A, B, payload.Length, sum);
        Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(segment, A, B, out var parsed));
        Assert.Equal(payload, parsed.Payload.ToArray());
    }
}
