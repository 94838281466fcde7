using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using Vso.Transport.Interface;
using Vso.Transport.Wire;
using Xunit.Abstractions;

using Vso.Transport.Tests.Tcp;

namespace Vso.Transport.Tests.Robustness;

/// <summary>
/// One million seeded random and mutated frames thrown at a stack through its own receive path while a live
/// connection beside them moves 4 MiB each way: nothing escapes, the transfer is intact, and every malformed frame
/// is counted once under its layer and reason.
/// </summary>
public sealed class FrameFuzzTests(ITestOutputHelper output)
{
    private const int Frames = 1_000_000;
    private const int FramesPerTurn = 250;
    private const int TransferSize = 4 << 20;
    private const ushort LivePort = 80;
    private const ushort FuzzPort = 8080;

    [Fact]
    public void A_million_hostile_frames_beside_a_live_transfer_break_nothing()
    {
        var watch = Stopwatch.StartNew();
        using var net = new RobustNet(injector: true, delay: TimeSpan.FromMilliseconds(20));
        using var fuzzListener = net.Server.Listen(FuzzPort, backlog: 64);
        var (client, server) = net.Connect(LivePort);

        var up = SimulatedNetwork.Pattern(TransferSize, 31);
        var down = SimulatedNetwork.Pattern(TransferSize, 32);
        var sendUp = SimulatedNetwork.SendAllAsync(client, up, 128 * 1024);
        var sendDown = SimulatedNetwork.SendAllAsync(server, down, 128 * 1024);
        var receiveUp = SimulatedNetwork.ReceiveAllAsync(server);
        var receiveDown = SimulatedNetwork.ReceiveAllAsync(client);

        var generator = new FrameGenerator(seed: 0x5EED_F022, serverMac: net.ServerWire.HardwareAddress, clientMac: net.ClientWire.HardwareAddress);
        var expected = new long[WireLayerInfo.Count, WireStatusInfo.Count];
        var expectedMartians = new long[1];
        var injector = net.Injector!;
        var frame = new byte[2048];
        var injected = 0;
        var skipped = 0;
        var transferDoneAt = -1;
        while (injected < Frames)
        {
            for (var i = 0; i < FramesPerTurn && injected < Frames; i++)
            {
                var length = generator.Next(frame);
                var span = frame.AsSpan(0, length);
                if (TouchesLiveConnection(span))
                {
                    skipped++;
                    continue;
                }

                Classify(span, net.ServerWire.HardwareAddress, expected, expectedMartians);
                injector.Inject(span);
                injected++;
            }

            net.Driver.Run(TimeSpan.FromMilliseconds(1));
            if (transferDoneAt < 0 && receiveUp.IsCompleted && receiveDown.IsCompleted)
            {
                transferDoneAt = injected;
            }
        }

        Assert.True(net.Run(() => receiveUp.IsCompleted && receiveDown.IsCompleted && sendUp.IsCompleted && sendDown.IsCompleted, TimeSpan.FromMinutes(5)));
        watch.Stop();

        output.WriteLine($"{watch.Elapsed.TotalSeconds:F1} s real, {net.Clock.NowMicroseconds / 1000} ms virtual; transfer done after {transferDoneAt} frames; skipped {skipped}; " +
            $"dropped {net.Server.WireCounters.TotalDropped}; resets sent {net.Server.Core.Tcp.ResetsSent}; echo replies {net.Server.Core.Interface.EchoRepliesSent}; " +
            $"connections {net.Server.ConnectionCount}; ARP entries {net.Server.Core.Interface.ArpEntries}; frames received {net.Server.Core.Interface.FramesReceived}; not for us {net.Server.Core.Interface.NotForUs}; server sent {net.ServerProbe.FramesTransmitted} frames");
        for (var layer = 0; layer < WireLayerInfo.Count; layer++)
        {
            for (var status = 0; status < WireStatusInfo.Count; status++)
            {
                if (expected[layer, status] != 0)
                {
                    output.WriteLine($"  {(WireLayer)layer}/{(WireStatus)status}: {expected[layer, status]}");
                }
            }
        }

        // Nothing escaped: no exception contained by the engine, none in the application's tasks.
        Assert.Equal(0, net.Server.ContainedExceptions);
        Assert.Equal(0, net.Client.ContainedExceptions);
        Assert.True(sendUp.IsCompletedSuccessfully, sendUp.Exception?.ToString());
        Assert.True(sendDown.IsCompletedSuccessfully, sendDown.Exception?.ToString());
        Assert.True(receiveUp.IsCompletedSuccessfully, receiveUp.Exception?.ToString());
        Assert.True(receiveDown.IsCompletedSuccessfully, receiveDown.Exception?.ToString());

        // The transfer is intact, and it ran while the frames were arriving.
        var (upLength, upHash) = net.Await(receiveUp);
        var (downLength, downHash) = net.Await(receiveDown);
        Assert.Equal(TransferSize, upLength);
        Assert.Equal(SHA256.HashData(up), upHash);
        Assert.Equal(TransferSize, downLength);
        Assert.Equal(SHA256.HashData(down), downHash);
        Assert.True(transferDoneAt > 0 && transferDoneAt < Frames, $"transfer finished after {transferDoneAt} frames");
        Assert.Equal(Frames, injector.Injected);
        Assert.True(skipped < Frames / 1000, $"{skipped} frames skipped");

        // Every malformed frame is counted once, under the layer and reason its parser gives.
        var counters = net.Server.WireCounters;
        for (var layer = 0; layer < WireLayerInfo.Count; layer++)
        {
            for (var status = 0; status < WireStatusInfo.Count; status++)
            {
                Assert.True(
                    expected[layer, status] == counters.Dropped((WireLayer)layer, (WireStatus)status),
                    $"{(WireLayer)layer}/{(WireStatus)status}: expected {expected[layer, status]}, counted {counters.Dropped((WireLayer)layer, (WireStatus)status)}");
            }
        }

        // Datagrams from sources that cannot be genuine (or that we have no route to) are counted apart, before any protocol.
        Assert.Equal(expectedMartians[0], net.Server.Core.Interface.Martians.Total);

        // The mix reaches every kind of damage, and plenty of hostile but valid segments reach the TCP layer.
        foreach (var (layer, status) in new[]
        {
            (WireLayer.Ethernet, WireStatus.Truncated), (WireLayer.Ethernet, WireStatus.UnsupportedEtherType),
            (WireLayer.Ipv4, WireStatus.Truncated), (WireLayer.Ipv4, WireStatus.BadVersion), (WireLayer.Ipv4, WireStatus.BadHeaderLength),
            (WireLayer.Ipv4, WireStatus.BadLength), (WireLayer.Ipv4, WireStatus.BadChecksum), (WireLayer.Ipv4, WireStatus.Fragment),
            (WireLayer.Ipv4, WireStatus.UnsupportedProtocol), (WireLayer.Tcp, WireStatus.Truncated), (WireLayer.Tcp, WireStatus.BadHeaderLength),
            (WireLayer.Tcp, WireStatus.BadChecksum), (WireLayer.Tcp, WireStatus.BadOption), (WireLayer.Arp, WireStatus.Truncated),
            (WireLayer.Arp, WireStatus.Unsupported), (WireLayer.Icmp, WireStatus.BadChecksum),
        })
        {
            Assert.True(counters.Dropped(layer, status) > 100, $"{layer}/{status} was hit only {counters.Dropped(layer, status)} times");
        }

        // Every one of them was answered or held back by the reply limits (RSTs and echo replies are rate-limited).
        Assert.True(net.Server.Core.Tcp.ResetsSent + net.Server.Core.Tcp.ResetsSuppressed > 10_000, $"resets sent: {net.Server.Core.Tcp.ResetsSent}, suppressed {net.Server.Core.Tcp.ResetsSuppressed}");
        Assert.True(net.Server.Core.Interface.EchoRepliesSent + net.Server.Core.Interface.EchoRepliesSuppressed > 1_000, $"echo replies: {net.Server.Core.Interface.EchoRepliesSent}, suppressed {net.Server.Core.Interface.EchoRepliesSuppressed}");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), $"took {watch.Elapsed}");

        // Spoofed sources and ARP packets from a million frames do not grow the neighbour table without bound.
        Assert.True(net.Server.Core.Interface.ArpEntries <= ArpCache.DefaultCapacity, $"ARP cache holds {net.Server.Core.Interface.ArpEntries} entries");

        // The stack still serves: a new connection on the live port works, and the pins are all released.
        var (client2, server2) = net.Connect(LivePort);
        var hello = SimulatedNetwork.Pattern(10_000, 33);
        var sendHello = SimulatedNetwork.SendAllAsync(client2, hello, 10_000);
        var (helloLength, helloHash) = net.Await(SimulatedNetwork.ReceiveAllAsync(server2));
        Assert.Equal(hello.Length, helloLength);
        Assert.Equal(SHA256.HashData(hello), helloHash);
        net.Await(sendHello);
        Assert.Equal(0, net.Server.PinnedBytes);
        Assert.Equal(0, net.Client.PinnedBytes);
        Assert.Equal(0, net.Server.ContainedExceptions);
    }

    [Fact]
    public void The_frame_generator_is_deterministic()
    {
        var mac = new MacAddress(0x0200_0000_0002UL);
        var peer = new MacAddress(0x0200_0000_0001UL);
        var a = new FrameGenerator(7, mac, peer);
        var b = new FrameGenerator(7, mac, peer);
        var fa = new byte[2048];
        var fb = new byte[2048];
        for (var i = 0; i < 10_000; i++)
        {
            var la = a.Next(fa);
            var lb = b.Next(fb);
            Assert.True(fa.AsSpan(0, la).SequenceEqual(fb.AsSpan(0, lb)), $"frame {i} differs");
        }
    }

    /// <summary>
    /// Frames that could legitimately disturb the live connection are not injected: an IPv4 packet from the client's
    /// address (it could carry the live 4-tuple) or an ARP packet claiming the client's address (ARP has no defence
    /// against spoofing; that is not what this test is about).
    /// </summary>
    private static bool TouchesLiveConnection(ReadOnlySpan<byte> frame)
    {
        if (EthernetFrame.TryParse(frame, out var ethernet) != WireStatus.Ok)
        {
            return false;
        }

        var payload = ethernet.Payload;
        return ethernet.EtherType switch
        {
            EtherType.Ipv4 => payload.Length >= 16 && Ipv4Address.Read(payload[12..]) == SimulatedNetwork.ClientAddress,
            EtherType.Arp => payload.Length >= 18 && Ipv4Address.Read(payload[14..]) == SimulatedNetwork.ClientAddress,
            _ => false,
        };
    }

    /// <summary>The oracle: what NetworkInterface must count for this frame, from the wire parsers themselves.</summary>
    private static void Classify(ReadOnlySpan<byte> frame, MacAddress ours, long[,] expected, long[] martians)
    {
        var status = EthernetFrame.TryParse(frame, out var ethernet);
        if (status != WireStatus.Ok)
        {
            expected[(int)WireLayer.Ethernet, (int)status]++;
            return;
        }

        if (ethernet.Destination != ours && !ethernet.Destination.IsBroadcast)
        {
            return;
        }

        switch (ethernet.EtherType)
        {
            case EtherType.Ipv4:
                status = Ipv4Packet.TryParse(ethernet.Payload, out var ip);
                if (status != WireStatus.Ok)
                {
                    expected[(int)WireLayer.Ipv4, (int)status]++;
                    return;
                }

                if (ip.Destination != SimulatedNetwork.ServerAddress)
                {
                    return;
                }

                // The martian filter (RFC 1122 §3.2.1.3) runs before any protocol: no gateway, a /24.
                var filter = new MartianFilter(SimulatedNetwork.ServerAddress, 24);
                var martian = ip.Protocol == IpProtocol.Tcp && ip.Payload.Length >= 4
                    ? filter.ClassifyTcp(ip.Source, BinaryPrimitives.ReadUInt16BigEndian(ip.Payload), ip.Destination, BinaryPrimitives.ReadUInt16BigEndian(ip.Payload[2..]))
                    : filter.Classify(ip.Source, ip.Destination);
                if (martian != MartianReason.None || !filter.IsOnLink(ip.Source))
                {
                    martians[0]++;
                    return;
                }

                switch (ip.Protocol)
                {
                    case IpProtocol.Tcp:
                        status = TcpSegment.TryParse(ip.Payload, ip.Source, ip.Destination, out _);
                        if (status != WireStatus.Ok)
                        {
                            expected[(int)WireLayer.Tcp, (int)status]++;
                        }

                        return;
                    case IpProtocol.Icmp when ip.Payload.Length > 0 && ip.Payload[0] == IcmpErrorMessage.DestinationUnreachable:
                        status = IcmpErrorMessage.TryParse(ip.Payload, out var error);
                        if (status != WireStatus.Ok)
                        {
                            expected[(int)WireLayer.Icmp, (int)status]++;
                        }
                        else if (error.QuotedSource != SimulatedNetwork.ServerAddress)
                        {
                            expected[(int)WireLayer.Icmp, (int)WireStatus.BadAddress]++;
                        }
                        else if (error.QuotedProtocol != IpProtocol.Tcp)
                        {
                            expected[(int)WireLayer.Icmp, (int)WireStatus.UnsupportedProtocol]++;
                        }

                        return;
                    case IpProtocol.Icmp:
                        status = IcmpEchoMessage.TryParse(ip.Payload, out _);
                        if (status != WireStatus.Ok)
                        {
                            expected[(int)WireLayer.Icmp, (int)status]++;
                        }

                        return;
                    default:
                        expected[(int)WireLayer.Ipv4, (int)WireStatus.UnsupportedProtocol]++;
                        return;
                }

            case EtherType.Arp:
                status = ArpPacket.TryParse(ethernet.Payload, out var arp);
                if (status != WireStatus.Ok)
                {
                    expected[(int)WireLayer.Arp, (int)status]++;
                }
                else
                {
                    var arpFilter = new MartianFilter(SimulatedNetwork.ServerAddress, 24);
                    if (arpFilter.ClassifySource(arp.SenderProtocol) != MartianReason.None || !arpFilter.IsOnLink(arp.SenderProtocol))
                    {
                        martians[0]++;
                    }
                }

                return;
            default:
                expected[(int)WireLayer.Ethernet, (int)WireStatus.UnsupportedEtherType]++;
                return;
        }
    }

    /// <summary>
    /// Seeded frames: pure noise, noise behind a valid Ethernet header, and valid Ethernet/IPv4/TCP, ARP and ICMP echo
    /// frames for the stack (its MAC or broadcast, its address, its listening ports) with random mutations; after
    /// mutating, checksums are recomputed half of the time so that hostile but valid segments reach the TCP layer.
    /// </summary>
    internal sealed class FrameGenerator(ulong seed, MacAddress serverMac, MacAddress clientMac)
    {
        private readonly Random _random = new((int)(seed ^ (seed >> 32)));
        private uint _recentSequence;

        public int Next(Span<byte> frame)
        {
            var kind = _random.Next(100);
            int length;
            if (kind < 8)
            {
                length = _random.Next(0, 1600);
                _random.NextBytes(frame[..length]);
                return length;
            }

            if (kind < 14)
            {
                length = _random.Next(14, 1514);
                _random.NextBytes(frame[..length]);
                WriteEthernet(frame, _random.Next(3) switch { 0 => EtherType.Arp, 1 => EtherType.Ipv4, _ => (EtherType)_random.Next(0, 65536) });
                return length;
            }

            if (kind < 74)
            {
                length = BuildTcp(frame);
            }
            else if (kind < 84)
            {
                length = BuildArp(frame);
            }
            else if (kind < 94)
            {
                length = BuildIcmp(frame);
            }
            else
            {
                length = BuildOtherIpv4(frame);
            }

            var mutations = _random.Next(0, 4);
            for (var m = 0; m < mutations; m++)
            {
                length = Mutate(frame, length);
            }

            if (_random.Next(2) == 0)
            {
                FixChecksums(frame[..length]);
            }

            return length;
        }

        private void WriteEthernet(Span<byte> frame, EtherType type)
        {
            var destination = _random.Next(20) switch
            {
                0 => MacAddress.Broadcast,
                1 => RandomMac(),
                _ => serverMac,
            };
            var source = RandomMac();
            if (source == clientMac)
            {
                source = new MacAddress(source.Value ^ 1);
            }

            EthernetFrame.WriteHeader(frame, destination, source, type);
        }

        private MacAddress RandomMac() => new((ulong)_random.NextInt64(0, 1L << 48));

        private Ipv4Address RandomSource() => _random.Next(4) switch
        {
            0 => new Ipv4Address((uint)_random.NextInt64(0, 1L << 32)),
            _ => new Ipv4Address(SimulatedNetwork.ServerAddress.Value & 0xFFFF_FF00 | (uint)_random.Next(3, 255)),
        };

        private Ipv4Address Destination() => _random.Next(25) == 0 ? new Ipv4Address((uint)_random.NextInt64(0, 1L << 32)) : SimulatedNetwork.ServerAddress;

        private int BuildTcp(Span<byte> frame)
        {
            WriteEthernet(frame, EtherType.Ipv4);
            var source = RandomSource();
            var destination = Destination();
            var options = TcpOptions.None;
            if (_random.Next(2) == 0)
            {
                options.Mss = (ushort)_random.Next(0, 65536);
            }

            if (_random.Next(3) == 0)
            {
                options.WindowScale = (sbyte)_random.Next(0, 20);
            }

            options.SackPermitted = _random.Next(3) == 0;
            options.HasTimestamp = _random.Next(2) == 0;
            options.TsVal = (uint)_random.NextInt64(0, 1L << 32);
            options.TsEcr = (uint)_random.NextInt64(0, 1L << 32);
            if (options.Mss == 0 && options.WindowScale < 0 && !options.SackPermitted && _random.Next(2) == 0)
            {
                var blocks = _random.Next(1, options.HasTimestamp ? 4 : 5);
                for (var i = 0; i < blocks; i++)
                {
                    var left = (uint)_random.NextInt64(0, 1L << 32);
                    options.SetSackBlock(i, new SackBlock(left, left + (uint)_random.Next(0, 100_000)));
                }
            }

            var flags = _random.Next(8) switch
            {
                0 => TcpFlags.Syn,
                1 => TcpFlags.Ack,
                2 => TcpFlags.Rst,
                3 => TcpFlags.Syn | TcpFlags.Ack,
                4 => TcpFlags.Fin | TcpFlags.Ack,
                5 => TcpFlags.Psh | TcpFlags.Ack,
                6 => TcpFlags.Rst | TcpFlags.Ack,
                _ => (TcpFlags)_random.Next(256),
            };
            var sourcePort = (ushort)_random.Next(1, 65536);
            var destinationPort = _random.Next(10) switch
            {
                < 6 => FuzzPort,
                < 8 => LivePort,
                _ => (ushort)_random.Next(0, 65536),
            };

            // Sequence numbers near each other now and then, so some segments land in a half-open connection's window.
            var sequence = _random.Next(3) == 0 ? _recentSequence + (uint)_random.Next(0, 3000) : (uint)_random.NextInt64(0, 1L << 32);
            _recentSequence = sequence;
            var ack = (uint)_random.NextInt64(0, 1L << 32);
            var tcp = frame[(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength)..];
            var headerLength = new TcpRepr { SourcePort = sourcePort, DestinationPort = destinationPort, SequenceNumber = sequence, AcknowledgmentNumber = ack, Flags = flags, Window = (ushort)_random.Next(0, 65536), Options = options }.Emit(tcp);
            var payloadLength = _random.Next(5) == 0 ? _random.Next(0, 1400 - headerLength) : _random.Next(0, 64);
            _random.NextBytes(tcp.Slice(headerLength, payloadLength));
            Ipv4Packet.WriteHeader(frame[EthernetFrame.HeaderLength..], source, destination, IpProtocol.Tcp, headerLength + payloadLength, (ushort)_random.Next(0, 65536));
            var length = EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + headerLength + payloadLength;
            FixChecksums(frame[..length]);
            return length;
        }

        private int BuildArp(Span<byte> frame)
        {
            WriteEthernet(frame, EtherType.Arp);
            var op = _random.Next(10) switch { < 5 => ArpOperation.Request, < 9 => ArpOperation.Reply, _ => (ArpOperation)_random.Next(0, 65536) };
            var target = _random.Next(4) == 0 ? new Ipv4Address((uint)_random.NextInt64(0, 1L << 32)) : SimulatedNetwork.ServerAddress;
            var length = EthernetFrame.HeaderLength + ArpPacket.Write(frame[EthernetFrame.HeaderLength..], op, RandomMac(), RandomSource(), RandomMac(), target);
            var padded = Math.Max(length, 60);
            frame[length..padded].Clear();
            return padded;
        }

        private int BuildIcmp(Span<byte> frame)
        {
            WriteEthernet(frame, EtherType.Ipv4);
            var dataLength = _random.Next(0, 200);
            var data = frame.Slice(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + 8, dataLength);
            _random.NextBytes(data);
            var type = _random.Next(4) == 0 ? (byte)_random.Next(0, 256) : (byte)8;
            var icmpLength = IcmpEchoMessage.WriteEcho(frame[(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength)..], type, (ushort)_random.Next(0, 65536), (ushort)_random.Next(0, 65536), data);
            Ipv4Packet.WriteHeader(frame[EthernetFrame.HeaderLength..], RandomSource(), Destination(), IpProtocol.Icmp, icmpLength, (ushort)_random.Next(0, 65536));
            return EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + icmpLength;
        }

        private int BuildOtherIpv4(Span<byte> frame)
        {
            WriteEthernet(frame, EtherType.Ipv4);
            var payloadLength = _random.Next(0, 300);
            _random.NextBytes(frame.Slice(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength, payloadLength));
            var protocol = _random.Next(2) == 0 ? IpProtocol.Udp : (IpProtocol)_random.Next(0, 256);
            Ipv4Packet.WriteHeader(frame[EthernetFrame.HeaderLength..], RandomSource(), Destination(), protocol, payloadLength, (ushort)_random.Next(0, 65536));
            var ip = frame[EthernetFrame.HeaderLength..];
            if (_random.Next(3) == 0)
            {
                // A fragment: more-fragments or an offset.
                BinaryPrimitives.WriteUInt16BigEndian(ip[6..], (ushort)_random.Next(1, 0x4000));
                FixIpChecksum(ip);
            }

            return EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + payloadLength;
        }

        private int Mutate(Span<byte> frame, int length)
        {
            const int Ip = EthernetFrame.HeaderLength;
            const int Tcp = Ip + Ipv4Packet.MinHeaderLength;
            switch (_random.Next(14))
            {
                case 0: // truncate
                    return _random.Next(0, length + 1);
                case 1: // extend with junk (trailing bytes beyond the IPv4 total length)
                    var extra = Math.Min(_random.Next(1, 64), frame.Length - length);
                    _random.NextBytes(frame.Slice(length, extra));
                    return length + extra;
                case 2: // one bit anywhere
                    if (length > 0)
                    {
                        frame[_random.Next(length)] ^= (byte)(1 << _random.Next(8));
                    }

                    return length;
                case 3: // IPv4 version / IHL
                    if (length > Ip)
                    {
                        frame[Ip] = _random.Next(2) == 0 ? (byte)(0x40 | _random.Next(16)) : (byte)_random.Next(256);
                    }

                    return length;
                case 4: // IPv4 total length
                    if (length > Ip + 4)
                    {
                        var total = BinaryPrimitives.ReadUInt16BigEndian(frame[(Ip + 2)..]);
                        BinaryPrimitives.WriteUInt16BigEndian(frame[(Ip + 2)..], (ushort)(_random.Next(2) == 0 ? total + _random.Next(-40, 40) : _random.Next(0, 65536)));
                    }

                    return length;
                case 5: // IPv4 flags and fragment offset
                    if (length > Ip + 8)
                    {
                        BinaryPrimitives.WriteUInt16BigEndian(frame[(Ip + 6)..], (ushort)_random.Next(0, 65536));
                    }

                    return length;
                case 6: // IPv4 protocol
                    if (length > Ip + 10)
                    {
                        frame[Ip + 9] = (byte)_random.Next(256);
                    }

                    return length;
                case 7: // TCP flags
                    if (length > Tcp + 14)
                    {
                        frame[Tcp + 13] = (byte)_random.Next(256);
                    }

                    return length;
                case 8: // TCP sequence or acknowledgment number
                    if (length > Tcp + 12)
                    {
                        BinaryPrimitives.WriteUInt32BigEndian(frame[(Tcp + 4 + (4 * _random.Next(2)))..], (uint)_random.NextInt64(0, 1L << 32));
                    }

                    return length;
                case 9: // TCP data offset
                    if (length > Tcp + 13)
                    {
                        frame[Tcp + 12] = (byte)((_random.Next(16) << 4) | (frame[Tcp + 12] & 0x0F));
                    }

                    return length;
                case 10: // option bytes: random, or a hostile length in a well-known kind
                    if (length > Tcp + 21)
                    {
                        var optionsEnd = Math.Min(length, Tcp + 60);
                        var at = _random.Next(Tcp + 20, optionsEnd);
                        if (_random.Next(2) == 0)
                        {
                            frame[at] = (byte)_random.Next(256);
                        }
                        else
                        {
                            frame[at] = (byte)_random.Next(0, 9);
                            if (at + 1 < length)
                            {
                                frame[at + 1] = (byte)(_random.Next(3) switch { 0 => 0, 1 => 1, _ => _random.Next(256) });
                            }
                        }
                    }

                    return length;
                case 11: // TCP ports
                    if (length > Tcp + 4)
                    {
                        BinaryPrimitives.WriteUInt16BigEndian(frame[(Tcp + (2 * _random.Next(2)))..], (ushort)_random.Next(0, 65536));
                    }

                    return length;
                case 12: // EtherType
                    if (length >= EthernetFrame.HeaderLength)
                    {
                        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], _random.Next(3) switch { 0 => (ushort)EtherType.Arp, 1 => (ushort)EtherType.Ipv4, _ => (ushort)_random.Next(0, 65536) });
                    }

                    return length;
                default: // a run of random bytes inside the headers
                    if (length > Ip)
                    {
                        var start = _random.Next(Ip, Math.Min(length, Tcp + 40));
                        var run = Math.Min(_random.Next(1, 8), length - start);
                        _random.NextBytes(frame.Slice(start, run));
                    }

                    return length;
            }
        }

        /// <summary>Recomputes the IPv4 header checksum and the TCP or ICMP checksum wherever the lengths allow it.</summary>
        private static void FixChecksums(Span<byte> frame)
        {
            if (frame.Length < EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength || BinaryPrimitives.ReadUInt16BigEndian(frame[12..]) != (ushort)EtherType.Ipv4)
            {
                return;
            }

            var ip = frame[EthernetFrame.HeaderLength..];
            var headerLength = (ip[0] & 0x0F) * 4;
            if (headerLength < Ipv4Packet.MinHeaderLength || headerLength > ip.Length)
            {
                return;
            }

            FixIpChecksum(ip);
            int total = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
            if (total < headerLength || total > ip.Length)
            {
                return;
            }

            var payload = ip[headerLength..total];
            var source = Ipv4Address.Read(ip[12..]);
            var destination = Ipv4Address.Read(ip[16..]);
            if (ip[9] == (byte)IpProtocol.Tcp && payload.Length >= TcpSegment.MinHeaderLength)
            {
                BinaryPrimitives.WriteUInt16BigEndian(payload[16..], 0);
                var sum = default(ChecksumAccumulator);
                TcpChecksum.AddPseudoHeader(ref sum, source, destination, payload.Length);
                sum.Add(payload);
                BinaryPrimitives.WriteUInt16BigEndian(payload[16..], sum.Finish());
            }
            else if (ip[9] == (byte)IpProtocol.Icmp && payload.Length >= 8)
            {
                BinaryPrimitives.WriteUInt16BigEndian(payload[2..], 0);
                BinaryPrimitives.WriteUInt16BigEndian(payload[2..], InternetChecksum.Compute(payload));
            }
        }

        private static void FixIpChecksum(Span<byte> ip)
        {
            var headerLength = (ip[0] & 0x0F) * 4;
            if (headerLength < Ipv4Packet.MinHeaderLength || headerLength > ip.Length)
            {
                return;
            }

            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], 0);
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], InternetChecksum.Compute(ip[..headerLength]));
        }
    }
}
