using System.Buffers.Binary;
using CsCheck;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Wire;

/// <summary>
/// Runs a CsCheck generator from a fixed PCG seed, so every run sees the same cases. CsCheck's own
/// <c>Sample(iter: n)</c> draws a fresh random seed per run; here a failure names the CsCheck seed of the failing case,
/// which reproduces (with shrinking) through <c>gen.Sample(assert, seed: "...")</c>.
/// </summary>
internal static class Deterministic
{
    public static void Check<T>(Gen<T> gen, Action<T> assert, ulong seed, int iterations)
    {
        var pcg = new PCG(1, seed);
        for (int i = 0; i < iterations; i++)
        {
            ulong state = pcg.State;
            var value = gen.Generate(pcg, null, out _);
            try
            {
                assert(value);
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException(
                    $"Case {i} failed; reproduce with gen.Sample(assert, seed: \"{pcg.ToString(state)}\"). {e.Message}", e);
            }
        }
    }
}

/// <summary>TCP options in a form the tests can generate, compare and hand to either encoder.</summary>
internal sealed record OptionSpec(ushort Mss, sbyte WindowScale, bool SackPermitted, bool HasTimestamp, uint TsVal, uint TsEcr, SackBlock[] Blocks)
{
    public static readonly Gen<OptionSpec> Gen =
        from hasMss in CsCheck.Gen.Bool
        from mss in CsCheck.Gen.UShort[1, ushort.MaxValue]
        from hasWs in CsCheck.Gen.Bool
        from ws in CsCheck.Gen.Int[0, 14]
        from sackOk in CsCheck.Gen.Bool
        from ts in CsCheck.Gen.Bool
        from tsVal in CsCheck.Gen.UInt
        from tsEcr in CsCheck.Gen.UInt
        from blockCount in CsCheck.Gen.Int[0, TcpOptions.MaxSackBlocks]
        from edges in CsCheck.Gen.UInt.Array[2 * TcpOptions.MaxSackBlocks]
        select Create(hasMss ? mss : (ushort)0, hasWs ? (sbyte)ws : (sbyte)-1, sackOk, ts, tsVal, tsEcr, blockCount, edges);

    private static OptionSpec Create(ushort mss, sbyte ws, bool sackOk, bool ts, uint tsVal, uint tsEcr, int blockCount, uint[] edges)
    {
        // Keep only the blocks that fit in 40 option bytes, so the generated value is exactly what goes on the wire.
        int fixedLength = (mss != 0 ? 4 : 0) + (ts ? 12 : sackOk ? 4 : 0) + (ws >= 0 ? 4 : 0);
        int fit = Math.Max(0, (TcpOptions.MaxLength - fixedLength - 4) / 8);
        var blocks = new SackBlock[Math.Min(blockCount, fit)];
        for (int i = 0; i < blocks.Length; i++)
        {
            blocks[i] = new SackBlock(edges[2 * i], edges[(2 * i) + 1]);
        }

        return new OptionSpec(mss, ws, sackOk, ts, tsVal, tsEcr, blocks);
    }

    public TcpOptions ToOptions()
    {
        var o = TcpOptions.None;
        o.Mss = Mss;
        o.WindowScale = WindowScale;
        o.SackPermitted = SackPermitted;
        o.HasTimestamp = HasTimestamp;
        o.TsVal = TsVal;
        o.TsEcr = TsEcr;
        for (int i = 0; i < Blocks.Length; i++)
        {
            o.SetSackBlock(i, Blocks[i]);
        }

        return o;
    }

    public static void AssertParsed(OptionSpec expected, TcpOptions actual)
    {
        Assert.Equal(expected.Mss, actual.Mss);
        Assert.Equal(expected.WindowScale, actual.WindowScale);
        Assert.Equal(expected.SackPermitted, actual.SackPermitted);
        Assert.Equal(expected.HasTimestamp, actual.HasTimestamp);
        if (expected.HasTimestamp)
        {
            Assert.Equal(expected.TsVal, actual.TsVal);
            Assert.Equal(expected.TsEcr, actual.TsEcr);
        }

        Assert.Equal(expected.Blocks.Length, actual.SackBlockCount);
        for (int i = 0; i < expected.Blocks.Length; i++)
        {
            Assert.Equal(expected.Blocks[i], actual.GetSackBlock(i));
        }
    }
}

/// <summary>Every header field of an Ethernet + IPv4 + TCP frame, generated at random.</summary>
internal sealed record TcpFrameCase(
    ulong SourceMac,
    ulong DestinationMac,
    uint SourceIp,
    uint DestinationIp,
    ushort Identification,
    byte Ttl,
    ushort SourcePort,
    ushort DestinationPort,
    uint Sequence,
    uint Acknowledgment,
    TcpFlags Flags,
    ushort Window,
    OptionSpec Options,
    byte[] Payload,
    int[] PayloadCuts)
{
    public static readonly Gen<TcpFrameCase> Gen =
        from macs in CsCheck.Gen.ULong[0, 0xFFFF_FFFF_FFFFUL].Array[2]
        from ips in CsCheck.Gen.UInt.Array[2]
        from id in CsCheck.Gen.UShort
        from ttl in CsCheck.Gen.Byte
        from ports in CsCheck.Gen.UShort.Array[2]
        from seq in CsCheck.Gen.UInt
        from ack in CsCheck.Gen.UInt
        from flags in CsCheck.Gen.Byte
        from window in CsCheck.Gen.UShort
        from options in OptionSpec.Gen
        from payload in CsCheck.Gen.Byte.Array[0, 1500]
        from cuts in CsCheck.Gen.Int[0, 1500].Array[0, 5]
        select new TcpFrameCase(
            macs[0], macs[1], ips[0], ips[1], id, ttl, ports[0], ports[1], seq, ack, (TcpFlags)flags, window, options, payload,
            [.. cuts.Select(c => Math.Min(c, payload.Length)).Order()]);

    public Ipv4Address Source => new(SourceIp);

    public Ipv4Address Destination => new(DestinationIp);

    /// <summary>The TCP header of the case, as the stack's own value type.</summary>
    public TcpRepr Header => new()
    {
        SourcePort = SourcePort,
        DestinationPort = DestinationPort,
        SequenceNumber = Sequence,
        AcknowledgmentNumber = Acknowledgment,
        Flags = Flags,
        Window = Window,
        Options = Options.ToOptions(),
    };

    /// <summary>Builds the frame with the stack's emitters; the payload checksum is summed piecewise at <see cref="PayloadCuts"/>.</summary>
    public byte[] Emit()
    {
        var frame = new byte[EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + Header.HeaderLength + Payload.Length];
        var span = frame.AsSpan();
        int offset = EthernetFrame.WriteHeader(span, new MacAddress(DestinationMac), new MacAddress(SourceMac), EtherType.Ipv4);
        int tcpOffset = offset + Ipv4Packet.MinHeaderLength;
        int tcpHeaderLength = Header.Emit(span[tcpOffset..]);
        Assert.Equal(Ipv4Packet.MinHeaderLength, Ipv4Packet.WriteHeader(span[offset..], Source, Destination, IpProtocol.Tcp, tcpHeaderLength + Payload.Length, Identification, Ttl));
        Payload.CopyTo(span[(tcpOffset + tcpHeaderLength)..]);

        var sum = default(ChecksumAccumulator);
        int previous = 0;
        foreach (int cut in PayloadCuts.Append(Payload.Length))
        {
            sum.Add(Payload.AsSpan(previous, cut - previous));
            previous = cut;
        }

        TcpChecksum.Finish(span[tcpOffset..], tcpHeaderLength, Source, Destination, Payload.Length, sum);
        return frame;
    }
}

internal static class WireTestFrames
{
    /// <summary>RFC 1071 the slow, obvious way: big-endian words, odd byte padded with zero, end-around carry.</summary>
    public static ushort ReferenceChecksum(ReadOnlySpan<byte> data)
    {
        ulong sum = 0;
        for (int i = 0; i < data.Length; i += 2)
        {
            sum += (ulong)(data[i] << 8) + (i + 1 < data.Length ? data[i + 1] : 0u);
        }

        while (sum > 0xFFFF)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        return (ushort)~sum;
    }

    /// <summary>Recomputes the IPv4 header checksum in place, for tests that edit header fields on purpose.</summary>
    public static void RefreshIpv4Checksum(Span<byte> packet)
    {
        int headerLength = Math.Min((packet[0] & 0x0F) * 4, packet.Length);
        packet[10] = 0;
        packet[11] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(packet[10..], WireTestFrames.ReferenceChecksum(packet[..headerLength]));
    }

    /// <summary>Recomputes the TCP checksum of <paramref name="segment"/> (the whole IPv4 payload) in place.</summary>
    public static void RefreshTcpChecksum(Span<byte> segment, Ipv4Address source, Ipv4Address destination)
    {
        var pseudo = new byte[12 + segment.Length];
        source.Write(pseudo);
        destination.Write(pseudo.AsSpan(4));
        pseudo[9] = (byte)IpProtocol.Tcp;
        BinaryPrimitives.WriteUInt16BigEndian(pseudo.AsSpan(10), (ushort)segment.Length);
        segment[16] = 0;
        segment[17] = 0;
        segment.CopyTo(pseudo.AsSpan(12));
        BinaryPrimitives.WriteUInt16BigEndian(segment[16..], ReferenceChecksum(pseudo));
    }

    /// <summary>A TCP segment (no IP) with the given raw option bytes and a valid checksum.</summary>
    public static byte[] TcpSegmentWithOptions(ReadOnlySpan<byte> optionBytes, Ipv4Address source, Ipv4Address destination, int payloadLength = 3)
    {
        var segment = new byte[TcpSegment.MinHeaderLength + optionBytes.Length + payloadLength];
        new TcpRepr { SourcePort = 40000, DestinationPort = 80, SequenceNumber = 1000, AcknowledgmentNumber = 2000, Flags = TcpFlags.Ack, Window = 65535, Options = TcpOptions.None }.Emit(segment);
        segment[12] = (byte)(((TcpSegment.MinHeaderLength + optionBytes.Length) / 4) << 4);
        optionBytes.CopyTo(segment.AsSpan(TcpSegment.MinHeaderLength));
        for (int i = 0; i < payloadLength; i++)
        {
            segment[TcpSegment.MinHeaderLength + optionBytes.Length + i] = (byte)(0xA0 + i);
        }

        RefreshTcpChecksum(segment, source, destination);
        return segment;
    }
}
