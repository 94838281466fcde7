using System.Diagnostics.Metrics;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Shards;

/// <summary>
/// A stack of two shards on a two-queue device, the peer played by hand on a one-queue end: frames that reach the wrong
/// shard are handed to the one that owns them and counted (<c>vso.shard.handovers</c>).
/// </summary>
public sealed class ShardHandoverTraces : IFrameReceiver, IDisposable
{
    private static readonly Ipv4Address PeerAddress = Ipv4Address.Parse("198.18.0.1");
    private static readonly Ipv4Address StackAddress = Ipv4Address.Parse("198.18.0.2");
    private readonly VirtualClock _clock = new();
    private readonly SimulatedLink _peer;
    private readonly SimulatedLink[] _queues;
    private readonly VsoStack _stack;
    private readonly VirtualTimeDriver _driver;
    private readonly TransmitBatch _batch = new(4, 1514);
    private readonly List<byte[]> _received = [];
    private readonly MeterListener _meters = new();
    private long _handoverMeasurements;

    public ShardHandoverTraces()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        var (a, b) = SimulatedLink.CreateMultiQueuePair(_clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.Zero }, 1, 2);
        _peer = a[0];
        _queues = b;
        _stack = new VsoStack((i, _) => b[i], 2, new VsoStackOptions { Address = StackAddress, PrefixLength = 24, Tcp = new TcpSettings { IsnKey = [1, 2, 3, 4] }, InlineContinuations = true }, _clock);
        _driver = new VirtualTimeDriver(_clock, _stack);
        _meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Name == "vso.shard.handovers" && ReferenceEquals(instrument.Meter, _stack.Meter))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _meters.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _handoverMeasurements, value));
        _meters.Start();
    }

    /// <summary>
    /// RFC 826: shard 1 opens a connection and asks for the peer's address; the reply, like every ARP frame, reaches queue 0
    /// and is handed to shard 1 (which then sends its SYN); shard 0 learns from it too. The peer's SYN-ACK, put on queue 0
    /// although its flow belongs to shard 1 (a device that hashed it elsewhere), is handed over and completes the handshake
    /// on shard 1 (RFC 9293 §3.10.7.3 SYN-SENT). Both hand-overs are counted, per shard and in the meter.
    /// </summary>
    [Fact]
    public void An_ARP_reply_and_a_misrouted_SYN_ACK_are_handed_to_the_owning_shard_and_counted()
    {
        var connected = new VsoConnection(_stack, null, null, _stack.Shards[1]);
        connected.PostConnect(PeerAddress, 80, 0, CancellationToken.None);
        var task = connected.Connected;
        Pump();

        // Shard 1 has no neighbour entry: a broadcast ARP request, nothing else.
        var request = Assert.Single(_received);
        Assert.Equal(WireStatus.Ok, EthernetFrame.TryParse(request, out var ethernet));
        Assert.Equal(EtherType.Arp, ethernet.EtherType);
        _received.Clear();

        SendArpReply();
        Pump();
        Assert.Equal(1, _stack.Shards[0].HandedOver);
        Assert.Equal(1, _stack.Shards[1].HandedIn);
        Assert.Equal(1, _stack.Shards[0].Interface.ArpEntries); // the shard that received it learned as well
        var syn = ParseTcp(Assert.Single(_received));
        Assert.Equal(TcpFlags.Syn, syn.Flags);
        Assert.Equal(1, FlowHash.ShardOf(new ConnectionId(StackAddress, syn.SourcePort, PeerAddress, 80), 2)); // the port maps back to shard 1
        _received.Clear();

        // The SYN-ACK arrives on queue 0, the wrong one.
        _queues[0].Inject(TcpFrame(new TcpRepr
        {
            SourcePort = 80,
            DestinationPort = syn.SourcePort,
            SequenceNumber = 7000,
            AcknowledgmentNumber = syn.SequenceNumber + 1,
            Flags = TcpFlags.Syn | TcpFlags.Ack,
            Window = 65535,
            Options = TcpOptions.None,
        }));
        Pump();
        Assert.True(task.IsCompletedSuccessfully);
        Assert.Equal(2, _stack.Shards[0].HandedOver);
        Assert.Equal(2, _stack.Shards[1].HandedIn);
        Assert.Equal(0, _stack.Shards[1].HandedOver);
        Assert.Equal(0, _stack.Shards[0].Tcp.ConnectionCount); // shard 0 neither answered it with RST nor kept it
        Assert.Equal(1, _stack.Shards[1].Tcp.ConnectionCount);
        var ack = ParseTcp(Assert.Single(_received));
        Assert.Equal(TcpFlags.Ack, ack.Flags);
        Assert.Equal(7001u, ack.AcknowledgmentNumber);
        _meters.RecordObservableInstruments();
        Assert.Equal(2, Interlocked.Read(ref _handoverMeasurements));
    }

    private void Pump()
    {
        bool progress;
        do
        {
            _driver.RunIdle();
            progress = _peer.Receive(this, int.MaxValue) > 0;
        }
        while (progress);
    }

    void IFrameReceiver.OnFrame(ReadOnlySpan<byte> frame) => _received.Add(frame.ToArray());

    private static TcpRepr ParseTcp(byte[] frame)
    {
        Assert.Equal(WireStatus.Ok, EthernetFrame.TryParse(frame, out var ethernet));
        Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(ethernet.Payload, out var ip));
        Assert.Equal(WireStatus.Ok, TcpRepr.TryParse(ip.Payload, ip.Source, ip.Destination, out var header, out _));
        return header;
    }

    private void SendArpReply()
    {
        var frame = _batch.Begin();
        EthernetFrame.WriteHeader(frame, _queues[0].HardwareAddress, _peer.HardwareAddress, EtherType.Arp);
        var length = ArpPacket.Write(frame[EthernetFrame.HeaderLength..], ArpOperation.Reply, _peer.HardwareAddress, PeerAddress, _queues[0].HardwareAddress, StackAddress);
        var total = Math.Max(EthernetFrame.HeaderLength + length, 60);
        frame[(EthernetFrame.HeaderLength + length)..total].Clear();
        _batch.Commit(total);
        _peer.Transmit(_batch);
        _batch.Clear();
    }

    private byte[] TcpFrame(in TcpRepr header)
    {
        var frame = new byte[EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + 60];
        EthernetFrame.WriteHeader(frame, _queues[0].HardwareAddress, _peer.HardwareAddress, EtherType.Ipv4);
        var ip = frame.AsSpan(EthernetFrame.HeaderLength);
        var tcp = ip[Ipv4Packet.MinHeaderLength..];
        var headerLength = header.Emit(tcp);
        TcpChecksum.Finish(tcp, headerLength, PeerAddress, StackAddress, 0, default);
        Ipv4Packet.WriteHeader(ip, PeerAddress, StackAddress, IpProtocol.Tcp, headerLength, 1);
        return frame[..(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + headerLength)];
    }

    public void Dispose()
    {
        _meters.Dispose();
        _stack.Dispose();
        _peer.Dispose();
    }
}
