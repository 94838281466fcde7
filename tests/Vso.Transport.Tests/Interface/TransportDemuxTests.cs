using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Interface;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Interface;

/// <summary>
/// The interface hands each IP protocol's datagrams to the transport registered for it, and a transport sends through
/// the interface's <see cref="IIpOutput"/> port; TCP is one such transport, not a property of the interface.
/// </summary>
public sealed class TransportDemuxTests
{
    private static readonly Ipv4Address PeerAddress = Ipv4Address.Parse("198.18.0.1");
    private static readonly Ipv4Address StackAddress = Ipv4Address.Parse("198.18.0.2");

    [Fact]
    public void A_registered_transport_receives_its_protocol_and_answers_through_the_port()
    {
        var clock = new VirtualClock();
        var (peerWire, stackWire) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.Zero });
        using var stack = new VsoStack(stackWire, new VsoStackOptions { Address = StackAddress, PrefixLength = 24 }, clock);
        var echo = new EchoTransport(stack.Core.Interface);
        stack.Core.Interface.Register(echo);
        Assert.Throws<InvalidOperationException>(() => stack.Core.Interface.Register(new EchoTransport(stack.Core.Interface)));

        var peer = new Peer(peerWire, stack);
        peer.SendArpRequest();
        peer.SendDatagram(IpProtocol.Udp, [1, 2, 3, 4, 5]);
        while (stack.Core.Poll())
        {
        }

        peerWire.Receive(peer, int.MaxValue);

        Assert.Equal(1, echo.Received);
        Assert.Equal(1, echo.NeighborsResolved);
        var reply = Assert.Single(peer.Datagrams);
        Assert.Equal(IpProtocol.Udp, reply.Protocol);
        Assert.Equal([1, 2, 3, 4, 5, 0xAA, 0xBB], reply.Payload); // the linear bytes, then the gathered ones

        // A protocol nobody registered is still counted as unsupported.
        var before = stack.Core.Interface.Counters.Dropped(WireLayer.Ipv4, WireStatus.UnsupportedProtocol);
        peer.SendDatagram((IpProtocol)99, [7]);
        stack.Core.Poll();
        Assert.Equal(before + 1, stack.Core.Interface.Counters.Dropped(WireLayer.Ipv4, WireStatus.UnsupportedProtocol));
        Assert.Equal(1, echo.Received);
    }

    /// <summary>Answers each datagram to its source: the payload copied, then two bytes gathered from pinned memory.</summary>
    private sealed class EchoTransport(IIpOutput ip) : ITransportProtocol, Vso.MemoryPinning.IPinLeaseOwner
    {
        private static readonly byte[] Tail = GC.AllocateArray<byte>(2, pinned: true);

        public int Received { get; private set; }

        public int NeighborsResolved { get; private set; }

        public IpProtocol Protocol => IpProtocol.Udp;

        public void OnDatagram(in Ipv4Packet datagram)
        {
            Received++;
            Assert.True(ip.TryBegin(datagram.Source, IpProtocol.Udp));
            datagram.Payload.CopyTo(ip.Append(datagram.Payload.Length));
            Tail[0] = 0xAA;
            Tail[1] = 0xBB;
            ip.AppendGathered(new Vso.MemoryPinning.PinLease(this, System.Runtime.InteropServices.Marshal.UnsafeAddrOfPinnedArrayElement(Tail, 0), 2, 0));

            ip.Commit();
        }

        public void OnNeighborResolved(Ipv4Address neighbor) => NeighborsResolved++;

        public void EndLease(nint address, int length, long token)
        {
        }
    }

    /// <summary>The far end of the wire: ARP and raw IPv4 datagrams.</summary>
    private sealed class Peer(SimulatedLink wire, VsoStack stack) : IFrameReceiver
    {
        private readonly TransmitBatch _batch = new(1, EthernetFrame.HeaderLength + wire.Mtu);

        public List<(IpProtocol Protocol, byte[] Payload)> Datagrams { get; } = [];

        public void SendArpRequest()
        {
            var frame = _batch.Begin();
            EthernetFrame.WriteHeader(frame, MacAddress.Broadcast, wire.HardwareAddress, EtherType.Arp);
            var length = ArpPacket.Write(frame[EthernetFrame.HeaderLength..], ArpOperation.Request, wire.HardwareAddress, PeerAddress, MacAddress.Zero, StackAddress);
            frame[(EthernetFrame.HeaderLength + length)..60].Clear();
            Send(60);
        }

        public void SendDatagram(IpProtocol protocol, byte[] payload)
        {
            var frame = _batch.Begin();
            EthernetFrame.WriteHeader(frame, stack.Core.Link.HardwareAddress, wire.HardwareAddress, EtherType.Ipv4);
            Ipv4Packet.WriteHeader(frame[EthernetFrame.HeaderLength..], PeerAddress, StackAddress, protocol, payload.Length, 1);
            payload.CopyTo(frame[(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength)..]);
            Send(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + payload.Length);
        }

        public void OnFrame(ReadOnlySpan<byte> frame)
        {
            Assert.Equal(WireStatus.Ok, EthernetFrame.TryParse(frame, out var ethernet));
            if (ethernet.EtherType != EtherType.Ipv4)
            {
                return;
            }

            Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(ethernet.Payload, out var ip));
            Assert.Equal(StackAddress, ip.Source);
            Assert.Equal(PeerAddress, ip.Destination);
            Datagrams.Add((ip.Protocol, ip.Payload.ToArray()));
        }

        private void Send(int length)
        {
            _batch.Commit(length);
            wire.Transmit(_batch);
            _batch.Clear();
        }
    }
}
