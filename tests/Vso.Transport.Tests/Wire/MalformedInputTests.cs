using System.Buffers.Binary;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Wire;

/// <summary>Every malformation maps to one exact <see cref="WireStatus"/>; nothing network-supplied throws.</summary>
public sealed class MalformedInputTests
{
    private static readonly Ipv4Address Client = Ipv4Address.Parse("198.18.0.1");
    private static readonly Ipv4Address Server = Ipv4Address.Parse("198.18.0.2");

    private static byte[] ValidFrame(int payloadLength = 37)
    {
        var options = TcpOptions.None;
        options.Mss = 1460;
        options.WindowScale = 7;
        options.SackPermitted = true;
        options.HasTimestamp = true;
        options.TsVal = 0x01020304;
        var payload = Enumerable.Range(0, payloadLength).Select(i => (byte)(i * 7)).ToArray();
        var spec = new OptionSpec(options.Mss, options.WindowScale, true, true, options.TsVal, 0, []);
        return new TcpFrameCase(0x0200_0000_0001, 0x0200_0000_0002, Client.Value, Server.Value, 77, 64, 40000, 80, 1, 2, TcpFlags.Syn | TcpFlags.Ack, 29200, spec, payload, [Math.Min(13, payloadLength)]).Emit();
    }

    [Fact]
    public void Truncation_at_every_length_is_reported_by_the_layer_that_notices()
    {
        var frame = ValidFrame();
        for (int length = 0; length <= frame.Length; length++)
        {
            var cut = frame.AsSpan(0, length);
            var ethernet = EthernetFrame.TryParse(cut, out var eth);
            if (length < EthernetFrame.HeaderLength)
            {
                Assert.Equal(WireStatus.Truncated, ethernet);
                continue;
            }

            Assert.Equal(WireStatus.Ok, ethernet);
            var status = Ipv4Packet.TryParse(eth.Payload, out var ip);
            if (length < frame.Length)
            {
                Assert.True(status == WireStatus.Truncated, $"length {length}: {status}");
                continue;
            }

            Assert.Equal(WireStatus.Ok, status);
            Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(ip.Payload, ip.Source, ip.Destination, out _));
        }
    }

    [Fact]
    public void Tcp_segment_shorter_than_its_fixed_header_is_truncated()
    {
        var segment = Ipv4PayloadOf(ValidFrame(payloadLength: 0));
        for (int length = 0; length < TcpSegment.MinHeaderLength; length++)
        {
            Assert.Equal(WireStatus.Truncated, TcpSegment.TryParse(segment.AsSpan(0, length), Client, Server, out _));
        }
    }

    [Fact]
    public void Ipv4_header_fields_that_lie_are_rejected_precisely()
    {
        var ip = Ipv4PayloadOfFrame(ValidFrame());
        Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(ip, out _));

        // Version other than 4 (IPv6, garbage).
        foreach (int version in new[] { 0, 5, 6, 15 })
        {
            var p = ip.ToArray();
            p[0] = (byte)((version << 4) | 5);
            WireTestFrames.RefreshIpv4Checksum(p);
            Assert.Equal(WireStatus.BadVersion, Ipv4Packet.TryParse(p, out _));
        }

        // IHL below 5.
        for (int ihl = 0; ihl < 5; ihl++)
        {
            var p = ip.ToArray();
            p[0] = (byte)(0x40 | ihl);
            Assert.Equal(WireStatus.BadHeaderLength, Ipv4Packet.TryParse(p, out _));
        }

        // IHL claims more header than the total length holds.
        {
            var p = ip.AsSpan(0, 40).ToArray();
            p[0] = 0x4F;
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), 40);
            Assert.Equal(WireStatus.BadLength, Ipv4Packet.TryParse(p, out _));
        }

        // Total length below the header length.
        foreach (int total in new[] { 0, 1, 19 })
        {
            var p = ip.ToArray();
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)total);
            WireTestFrames.RefreshIpv4Checksum(p);
            Assert.Equal(WireStatus.BadLength, Ipv4Packet.TryParse(p, out _));
        }

        // Total length beyond the buffer.
        {
            var p = ip.ToArray();
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)(p.Length + 1));
            WireTestFrames.RefreshIpv4Checksum(p);
            Assert.Equal(WireStatus.Truncated, Ipv4Packet.TryParse(p, out _));
        }

        // Total length shorter than the buffer: the rest is link padding, and the TCP checksum then fails because
        // the segment really is shorter than the sender's.
        {
            var p = ip.ToArray();
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)(p.Length - 1));
            WireTestFrames.RefreshIpv4Checksum(p);
            Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(p, out var packet));
            Assert.Equal(p.Length - 1, packet.TotalLength);
            Assert.Equal(p.Length - 21, packet.Payload.Length);
            Assert.Equal(WireStatus.BadChecksum, TcpSegment.TryParse(packet.Payload, packet.Source, packet.Destination, out _));
        }
    }

    [Fact]
    public void Any_single_bit_flip_in_the_ipv4_header_after_the_length_fails_the_checksum()
    {
        var ip = Ipv4PayloadOfFrame(ValidFrame());
        for (int offset = 4; offset < Ipv4Packet.MinHeaderLength; offset++)
        {
            for (int bit = 0; bit < 8; bit++)
            {
                var p = ip.ToArray();
                p[offset] ^= (byte)(1 << bit);
                Assert.True(Ipv4Packet.TryParse(p, out _) == WireStatus.BadChecksum, $"offset {offset} bit {bit}");
            }
        }
    }

    [Fact]
    public void Fragments_are_reported_and_DF_alone_is_not_a_fragment()
    {
        var ip = Ipv4PayloadOfFrame(ValidFrame());
        foreach (var (flagsAndOffset, expected) in new (ushort, WireStatus)[]
        {
            (0x4000, WireStatus.Ok),        // DF
            (0x0000, WireStatus.Ok),        // no flags
            (0x2000, WireStatus.Fragment),  // MF, first fragment
            (0x0001, WireStatus.Fragment),  // last fragment, offset 8 bytes
            (0x3FFF, WireStatus.Fragment),
            (0x6000, WireStatus.Fragment),  // DF and MF together: still a fragment
        })
        {
            var p = ip.ToArray();
            BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(6), flagsAndOffset);
            WireTestFrames.RefreshIpv4Checksum(p);
            var status = Ipv4Packet.TryParse(p, out var packet);
            Assert.True(status == expected, $"0x{flagsAndOffset:x4}: {status}");
            if (status == WireStatus.Ok)
            {
                Assert.Equal((flagsAndOffset & 0x4000) != 0, packet.DontFragment);
            }
        }
    }

    [Fact]
    public void Ipv4_options_are_skipped_by_ihl_and_padding_is_trimmed()
    {
        var ip = Ipv4PayloadOfFrame(ValidFrame(payloadLength: 0));
        // Insert 8 option bytes (NOP, NOP, router alert RFC 2113, EOL padding) and 9 bytes of trailing link padding.
        byte[] options = [1, 1, 148, 4, 0, 0, 0, 0];
        var p = new byte[ip.Length + options.Length + 9];
        ip.AsSpan(0, 20).CopyTo(p);
        options.CopyTo(p, 20);
        ip.AsSpan(20).CopyTo(p.AsSpan(28));
        p.AsSpan(ip.Length + options.Length).Fill(0xEE);
        p[0] = 0x47;
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)(ip.Length + options.Length));
        WireTestFrames.RefreshIpv4Checksum(p);

        Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(p, out var packet));
        Assert.Equal(28, packet.HeaderLength);
        Assert.Equal(ip.Length + options.Length, packet.TotalLength);
        Assert.Equal(ip.AsSpan(20).ToArray(), packet.Payload.ToArray());
        Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(packet.Payload, packet.Source, packet.Destination, out var tcp));
        Assert.Equal(1460, tcp.Options.Mss);
    }

    [Fact]
    public void Tcp_data_offset_that_lies_is_a_bad_header_length()
    {
        var segment = Ipv4PayloadOf(ValidFrame(payloadLength: 0));
        Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(segment, Client, Server, out var ok));
        Assert.Equal(segment.Length, ok.HeaderLength);

        for (int dataOffset = 0; dataOffset < 16; dataOffset++)
        {
            var s = segment.ToArray();
            s[12] = (byte)((dataOffset << 4) | (s[12] & 0x0F));
            WireTestFrames.RefreshTcpChecksum(s, Client, Server);
            var status = TcpSegment.TryParse(s, Client, Server, out _);
            var expected = dataOffset < 5 || dataOffset * 4 > s.Length ? WireStatus.BadHeaderLength
                : dataOffset * 4 == s.Length ? WireStatus.Ok
                : (WireStatus?)null; // shorter offsets leave option bytes in the payload; the outcome depends on where the cut falls
            if (expected is { } e)
            {
                Assert.True(status == e, $"data offset {dataOffset}: {status}");
            }
        }
    }

    [Fact]
    public void Any_bit_flip_in_a_tcp_segment_or_pseudo_header_fails_the_checksum()
    {
        var segment = Ipv4PayloadOf(ValidFrame());
        for (int offset = 0; offset < segment.Length; offset++)
        {
            for (int bit = 0; bit < 8; bit++)
            {
                if (offset == 12 && bit >= 4)
                {
                    continue; // the data offset: checked before the checksum
                }

                var s = segment.ToArray();
                s[offset] ^= (byte)(1 << bit);
                Assert.True(TcpSegment.TryParse(s, Client, Server, out _) == WireStatus.BadChecksum, $"offset {offset} bit {bit}");
            }
        }

        Assert.Equal(WireStatus.BadChecksum, TcpSegment.TryParse(segment, new Ipv4Address(Client.Value + 1), Server, out _));
        Assert.Equal(WireStatus.BadChecksum, TcpSegment.TryParse(segment, Client, new Ipv4Address(Server.Value ^ 0x100), out _));
    }

    [Fact]
    public void Malformed_tcp_options_are_bad_options_and_unknown_ones_are_skipped()
    {
        var cases = new (string Name, byte[] Options, WireStatus Expected)[]
        {
            ("zero-length option", [30, 0, 0, 0], WireStatus.BadOption),
            ("one-length option", [30, 1, 0, 0], WireStatus.BadOption),
            ("zero-length MSS", [2, 0, 0, 0], WireStatus.BadOption),
            ("one-length MSS", [1, 1, 2, 1], WireStatus.BadOption),
            ("kind in the last byte, no length", [1, 1, 1, 2], WireStatus.BadOption),
            ("unknown option past the header", [1, 1, 30, 3], WireStatus.BadOption),
            ("timestamps past the header", [1, 1, 8, 10, 0, 0, 0, 0], WireStatus.BadOption),
            ("SACK past the header", [1, 1, 5, 10, 0, 0, 0, 0], WireStatus.BadOption),
            ("MSS of length 3", [2, 3, 5, 0], WireStatus.BadOption),
            ("MSS of length 5", [2, 5, 5, 0xb4, 0, 0, 0, 0], WireStatus.BadOption),
            ("window scale of length 4", [3, 4, 7, 0], WireStatus.BadOption),
            ("window scale of length 2", [3, 2, 1, 1], WireStatus.BadOption),
            ("SACK-permitted of length 3", [4, 3, 0, 0], WireStatus.BadOption),
            ("timestamps of length 8", [8, 8, 0, 0, 0, 0, 0, 0], WireStatus.BadOption),
            ("SACK without blocks", [1, 1, 5, 2], WireStatus.BadOption),
            ("SACK of length 9", [5, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], WireStatus.BadOption),
            ("only NOPs", [1, 1, 1, 1], WireStatus.Ok),
            ("only EOL", [0, 0, 0, 0], WireStatus.Ok),
            ("unknown then MSS", [253, 6, 9, 9, 9, 9, 2, 4, 5, 0xb4, 0, 0], WireStatus.Ok),
            ("MSS, then garbage after EOL is ignored", [2, 4, 5, 0xb4, 0, 2, 0, 9], WireStatus.Ok),
        };

        foreach (var (name, options, expected) in cases)
        {
            var segment = WireTestFrames.TcpSegmentWithOptions(options, Client, Server);
            var status = TcpSegment.TryParse(segment, Client, Server, out var tcp);
            Assert.True(status == expected, $"{name}: {status}");
            if (status == WireStatus.Ok)
            {
                Assert.Equal(TcpSegment.MinHeaderLength + options.Length, tcp.HeaderLength);
                Assert.Equal(new byte[] { 0xA0, 0xA1, 0xA2 }, tcp.Payload.ToArray());
                Assert.Equal(name.Contains("MSS", StringComparison.Ordinal) ? (ushort)1460 : (ushort)0, tcp.Options.Mss);
                Assert.Equal(-1, tcp.Options.WindowScale);
            }
        }
    }

    [Fact]
    public void Window_scale_above_14_is_clamped()
    {
        foreach (var (raw, expected) in new (byte, sbyte)[] { (0, 0), (14, 14), (15, 14), (255, 14) })
        {
            var segment = WireTestFrames.TcpSegmentWithOptions([1, 3, 3, raw], Client, Server);
            Assert.Equal(WireStatus.Ok, TcpSegment.TryParse(segment, Client, Server, out var tcp));
            Assert.Equal(expected, tcp.Options.WindowScale);
        }
    }

    [Fact]
    public void Arp_and_icmp_reject_what_they_do_not_handle()
    {
        var arp = new byte[ArpPacket.Length];
        ArpPacket.Write(arp, ArpOperation.Request, MacAddress.Parse("02:00:00:00:00:01"), Client, MacAddress.Zero, Server);
        Assert.Equal(WireStatus.Ok, ArpPacket.TryParse(arp, out _));
        for (int length = 0; length < ArpPacket.Length; length++)
        {
            Assert.Equal(WireStatus.Truncated, ArpPacket.TryParse(arp.AsSpan(0, length), out _));
        }

        foreach (var (offset, value) in new (int, byte)[] { (1, 6), (0, 1), (2, 0x86), (4, 8), (5, 16) })
        {
            var p = arp.ToArray();
            p[offset] = value;
            Assert.True(ArpPacket.TryParse(p, out _) == WireStatus.Unsupported, $"offset {offset} = {value}");
        }

        var rarp = arp.ToArray();
        rarp[7] = 3;
        Assert.Equal(WireStatus.Unsupported, ArpPacket.TryParse(rarp, out var rarpView));
        Assert.Equal((ArpOperation)3, rarpView.Operation);

        var echo = new byte[8 + 5];
        IcmpEchoMessage.WriteEcho(echo, IcmpEchoMessage.EchoRequest, 1, 2, [1, 2, 3, 4, 5]);
        Assert.Equal(WireStatus.Ok, IcmpEchoMessage.TryParse(echo, out _));
        for (int length = 0; length < 8; length++)
        {
            Assert.Equal(WireStatus.Truncated, IcmpEchoMessage.TryParse(echo.AsSpan(0, length), out _));
        }

        Assert.Equal(WireStatus.BadChecksum, IcmpEchoMessage.TryParse(echo.AsSpan(0, 12), out _));
        var flipped = echo.ToArray();
        flipped[12] ^= 0x10;
        Assert.Equal(WireStatus.BadChecksum, IcmpEchoMessage.TryParse(flipped, out _));

        // Destination unreachable (type 3) with a valid checksum: well-formed, not handled, still readable.
        var unreachable = echo.ToArray();
        unreachable[0] = 3;
        unreachable[1] = 3;
        unreachable[2] = 0;
        unreachable[3] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(unreachable.AsSpan(2), InternetChecksum.Compute(unreachable));
        Assert.Equal(WireStatus.Unsupported, IcmpEchoMessage.TryParse(unreachable, out var view));
        Assert.Equal(3, view.Type);
        Assert.Equal(3, view.Code);
    }

    [Fact]
    public void Random_mutations_of_valid_frames_never_throw_and_keep_views_consistent()
    {
        var random = new Random(20240611);
        var arpFrame = new byte[EthernetFrame.HeaderLength + ArpPacket.Length];
        EthernetFrame.WriteHeader(arpFrame, MacAddress.Broadcast, MacAddress.Parse("02:00:00:00:00:01"), EtherType.Arp);
        ArpPacket.Write(arpFrame.AsSpan(EthernetFrame.HeaderLength), ArpOperation.Request, MacAddress.Parse("02:00:00:00:00:01"), Client, MacAddress.Zero, Server);
        var icmpFrame = new byte[EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + 8 + 32];
        EthernetFrame.WriteHeader(icmpFrame, MacAddress.Broadcast, MacAddress.Parse("02:00:00:00:00:01"), EtherType.Ipv4);
        Ipv4Packet.WriteHeader(icmpFrame.AsSpan(EthernetFrame.HeaderLength), Client, Server, IpProtocol.Icmp, 40, 1);
        IcmpEchoMessage.WriteEcho(icmpFrame.AsSpan(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength), IcmpEchoMessage.EchoRequest, 1, 1, new byte[32]);
        byte[][] seeds = [ValidFrame(), ValidFrame(payloadLength: 0), ValidFrame(payloadLength: 1), arpFrame, icmpFrame];

        var outcomes = new int[WireStatusInfo.Count];
        var buffer = new byte[2048];
        for (int iteration = 0; iteration < 200_000; iteration++)
        {
            var seed = seeds[random.Next(seeds.Length)];
            int length = seed.Length;
            seed.CopyTo(buffer, 0);
            int mutations = 1 + random.Next(4);
            for (int m = 0; m < mutations; m++)
            {
                switch (random.Next(5))
                {
                    case 0: buffer[random.Next(length)] ^= (byte)(1 << random.Next(8)); break;
                    case 1: buffer[random.Next(length)] = (byte)random.Next(256); break;
                    case 2: length = random.Next(length + 1); break;
                    case 3: length = Math.Min(buffer.Length, length + random.Next(1, 64)); buffer[length - 1] = (byte)random.Next(256); break;
                    default:
                        // Mutate mostly where the interesting lengths and options are: IP header and TCP header.
                        int at = EthernetFrame.HeaderLength + random.Next(80);
                        if (at < length)
                        {
                            buffer[at] = (byte)random.Next(256);
                        }

                        break;
                }
            }

            var frame = buffer.AsSpan(0, length);
            if (random.Next(2) == 0)
            {
                // Repair checksums half the time so mutations get past them into lengths and options.
                RepairChecksums(frame);
            }

            outcomes[(int)ParseAll(frame)]++;
        }

        // The mix must actually reach deep: clean parses, checksum failures and option failures all occur.
        Assert.True(outcomes[(int)WireStatus.Ok] > 1000, "Ok " + outcomes[(int)WireStatus.Ok]);
        Assert.True(outcomes[(int)WireStatus.BadChecksum] > 1000, "BadChecksum " + outcomes[(int)WireStatus.BadChecksum]);
        Assert.True(outcomes[(int)WireStatus.BadOption] > 100, "BadOption " + outcomes[(int)WireStatus.BadOption]);
        Assert.True(outcomes[(int)WireStatus.Truncated] > 1000, "Truncated " + outcomes[(int)WireStatus.Truncated]);
    }

    /// <summary>The demultiplexing a stack does, with invariant checks on every successful view.</summary>
    private static WireStatus ParseAll(ReadOnlySpan<byte> frame)
    {
        var status = EthernetFrame.TryParse(frame, out var eth);
        if (status != WireStatus.Ok)
        {
            return status;
        }

        if (eth.EtherType == EtherType.Arp)
        {
            status = ArpPacket.TryParse(eth.Payload, out var arp);
            if (status == WireStatus.Ok)
            {
                _ = arp.SenderHardware;
                _ = arp.TargetProtocol;
            }

            return status;
        }

        if (eth.EtherType != EtherType.Ipv4)
        {
            return WireStatus.UnsupportedEtherType;
        }

        status = Ipv4Packet.TryParse(eth.Payload, out var ip);
        if (status != WireStatus.Ok)
        {
            return status;
        }

        Assert.InRange(ip.HeaderLength, 20, 60);
        Assert.Equal(ip.TotalLength - ip.HeaderLength, ip.Payload.Length);
        Assert.True(ip.TotalLength <= eth.Payload.Length);
        if (ip.Protocol == IpProtocol.Icmp)
        {
            status = IcmpEchoMessage.TryParse(ip.Payload, out var icmp);
            if (status == WireStatus.Ok)
            {
                Assert.Equal(ip.Payload.Length - 8, icmp.Data.Length);
            }

            return status;
        }

        if (ip.Protocol != IpProtocol.Tcp)
        {
            return WireStatus.UnsupportedProtocol;
        }

        status = TcpSegment.TryParse(ip.Payload, ip.Source, ip.Destination, out var tcp);
        if (status == WireStatus.Ok)
        {
            Assert.InRange(tcp.HeaderLength, 20, 60);
            Assert.Equal(ip.Payload.Length - tcp.HeaderLength, tcp.Payload.Length);
            var options = tcp.Options;
            Assert.InRange(options.SackBlockCount, 0, TcpOptions.MaxSackBlocks);
            Assert.InRange(options.WindowScale, -1, 14);
            for (int i = 0; i < options.SackBlockCount; i++)
            {
                _ = options.GetSackBlock(i);
            }
        }

        return status;
    }

    private static void RepairChecksums(Span<byte> frame)
    {
        if (frame.Length < EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength
            || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != (ushort)EtherType.Ipv4)
        {
            return;
        }

        var ip = frame[EthernetFrame.HeaderLength..];
        int headerLength = (ip[0] & 0x0F) * 4;
        int total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
        if (headerLength < 20 || headerLength > ip.Length)
        {
            return;
        }

        WireTestFrames.RefreshIpv4Checksum(ip);
        if (ip[9] == (byte)IpProtocol.Tcp && total >= headerLength + 20 && total <= ip.Length)
        {
            WireTestFrames.RefreshTcpChecksum(ip[headerLength..total], Ipv4Address.Read(ip[12..]), Ipv4Address.Read(ip[16..]));
        }
    }

    private static byte[] Ipv4PayloadOfFrame(byte[] frame) => frame.AsSpan(EthernetFrame.HeaderLength).ToArray();

    private static byte[] Ipv4PayloadOf(byte[] frame) => frame.AsSpan(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength).ToArray();
}
