using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Wire;

/// <summary><see cref="TcpRepr"/>: what Emit writes, TryParse reads back, field for field.</summary>
public sealed class TcpReprTests
{
    private static readonly Ipv4Address A = Ipv4Address.Parse("10.0.0.1");
    private static readonly Ipv4Address B = Ipv4Address.Parse("10.0.0.2");

    [Fact]
    public void Every_header_emitted_parses_back_to_the_same_values()
    {
        Deterministic.Check(TcpFrameCase.Gen, c =>
        {
            var frame = c.Emit();
            var segment = frame.AsSpan(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength);
            Assert.Equal(WireStatus.Ok, TcpRepr.TryParse(segment, c.Source, c.Destination, out var parsed, out var payload));
            var expected = c.Header;
            Assert.Equal(expected.SourcePort, parsed.SourcePort);
            Assert.Equal(expected.DestinationPort, parsed.DestinationPort);
            Assert.Equal(expected.SequenceNumber, parsed.SequenceNumber);
            Assert.Equal(expected.AcknowledgmentNumber, parsed.AcknowledgmentNumber);
            Assert.Equal(expected.Flags, parsed.Flags);
            Assert.Equal(expected.Window, parsed.Window);
            Assert.Equal(expected.HeaderLength, parsed.HeaderLength);
            OptionSpec.AssertParsed(c.Options, parsed.Options);
            Assert.Equal(c.Payload, payload.ToArray());
        }, seed: 0x7C9_4E9B, iterations: 500);
    }

    [Fact]
    public void Emit_writes_the_data_offset_and_zero_checksum_and_urgent_pointer_and_nothing_beyond_the_header()
    {
        var header = TcpRepr.Empty;
        header.SourcePort = 0x1234;
        header.DestinationPort = 80;
        header.SequenceNumber = 0xDEADBEEF;
        header.AcknowledgmentNumber = 7;
        header.Flags = TcpFlags.Syn | TcpFlags.Ack;
        header.Window = 0xFFFF;
        header.Options.Mss = 1460;

        var bytes = new byte[64];
        bytes.AsSpan().Fill(0xCC);
        Assert.Equal(24, header.HeaderLength);
        Assert.Equal(24, header.Emit(bytes));
        byte[] expected = [0x12, 0x34, 0, 80, 0xDE, 0xAD, 0xBE, 0xEF, 0, 0, 0, 7, 0x60, 0x12, 0xFF, 0xFF, 0, 0, 0, 0, 2, 4, 0x05, 0xB4];
        Assert.Equal(expected, bytes.AsSpan(0, 24).ToArray());
        Assert.Equal(0xCC, bytes[24]);
    }

    [Fact]
    public void A_segment_that_fails_its_checks_reports_why_and_yields_no_header()
    {
        var segment = WireTestFrames.TcpSegmentWithOptions([], A, B);
        segment[^1] ^= 0xFF;
        Assert.Equal(WireStatus.BadChecksum, TcpRepr.TryParse(segment, A, B, out var parsed, out var payload));
        Assert.Equal(0, parsed.SourcePort);
        Assert.Equal(-1, parsed.Options.WindowScale);
        Assert.True(payload.IsEmpty);
        Assert.Equal(WireStatus.Truncated, TcpRepr.TryParse(segment.AsSpan(0, 19), A, B, out _, out _));
    }
}
