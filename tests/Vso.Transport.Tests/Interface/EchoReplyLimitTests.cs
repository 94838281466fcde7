using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Interface;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Interface;

/// <summary>ICMP echo replies (RFC 792) are rate-limited per stack, as Linux's icmp_msgs_per_sec/icmp_msgs_burst (1000/s, 50).</summary>
public sealed class EchoReplyLimitTests
{
    private static readonly Ipv4Address PeerAddress = Ipv4Address.Parse("198.18.0.1");
    private static readonly Ipv4Address StackAddress = Ipv4Address.Parse("198.18.0.2");

    [Fact]
    public void A_burst_of_1000_echo_requests_gets_the_burst_then_the_rate()
    {
        var clock = new VirtualClock();
        var (peerWire, stackWire) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.Zero });
        using var stack = new VsoStack(stackWire, new VsoStackOptions { Address = StackAddress, PrefixLength = 24 }, clock);
        var peer = new Pinger(peerWire, stack);
        peer.SendArpRequest();
        Pump(stack, peerWire, peer);

        for (var i = 0; i < 1000; i++)
        {
            peer.SendEcho((ushort)i);
            Pump(stack, peerWire, peer);
        }

        Assert.Equal(NetworkInterface.EchoReplyBurst, peer.Replies);
        Assert.Equal(1000 - NetworkInterface.EchoReplyBurst, stack.Core.Interface.EchoRepliesSuppressed);

        // 10 ms later, 10 more tokens.
        clock.Advance(TimeSpan.FromMilliseconds(10));
        for (var i = 0; i < 1000; i++)
        {
            peer.SendEcho((ushort)i);
            Pump(stack, peerWire, peer);
        }

        Assert.Equal(NetworkInterface.EchoReplyBurst + 10, peer.Replies);
        Assert.Equal(NetworkInterface.EchoReplyBurst + 10, stack.Core.Interface.EchoRepliesSent);
    }

    private static void Pump(VsoStack stack, SimulatedLink peerWire, Pinger peer)
    {
        while (stack.Core.Poll())
        {
        }

        peerWire.Receive(peer, int.MaxValue);
    }

    private sealed class Pinger(SimulatedLink wire, VsoStack stack) : IFrameReceiver
    {
        private readonly TransmitBatch _batch = new(1, EthernetFrame.HeaderLength + wire.Mtu);

        public int Replies { get; private set; }

        public void SendArpRequest()
        {
            var frame = _batch.Begin();
            EthernetFrame.WriteHeader(frame, MacAddress.Broadcast, wire.HardwareAddress, EtherType.Arp);
            var length = ArpPacket.Write(frame[EthernetFrame.HeaderLength..], ArpOperation.Request, wire.HardwareAddress, PeerAddress, MacAddress.Zero, StackAddress);
            frame[(EthernetFrame.HeaderLength + length)..60].Clear();
            Send(60);
        }

        public void SendEcho(ushort sequence)
        {
            var frame = _batch.Begin();
            EthernetFrame.WriteHeader(frame, stack.Core.Link.HardwareAddress, wire.HardwareAddress, EtherType.Ipv4);
            var icmp = IcmpEchoMessage.WriteEcho(frame[(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength)..], 8, 7, sequence, [1, 2, 3, 4]);
            Ipv4Packet.WriteHeader(frame[EthernetFrame.HeaderLength..], PeerAddress, StackAddress, IpProtocol.Icmp, icmp, sequence);
            Send(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + icmp);
        }

        public void OnFrame(ReadOnlySpan<byte> frame)
        {
            Assert.Equal(WireStatus.Ok, EthernetFrame.TryParse(frame, out var ethernet));
            if (ethernet.EtherType != EtherType.Ipv4)
            {
                return;
            }

            Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(ethernet.Payload, out var ip));
            Assert.Equal(IpProtocol.Icmp, ip.Protocol);
            Assert.Equal(WireStatus.Ok, IcmpEchoMessage.TryParse(ip.Payload, out var echo));
            Assert.Equal(0, echo.Type);
            Replies++;
        }

        private void Send(int length)
        {
            _batch.Commit(length);
            wire.Transmit(_batch);
            _batch.Clear();
        }
    }
}
