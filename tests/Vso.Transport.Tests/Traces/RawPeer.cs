using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Traces;

/// <summary>Flag combinations, named the way a packet trace reads.</summary>
internal static class TraceFlags
{
    public const TcpFlags Syn = TcpFlags.Syn;
    public const TcpFlags SynAck = TcpFlags.Syn | TcpFlags.Ack;
    public const TcpFlags Ack = TcpFlags.Ack;
    public const TcpFlags PshAck = TcpFlags.Psh | TcpFlags.Ack;
    public const TcpFlags Fin = TcpFlags.Fin;
    public const TcpFlags FinAck = TcpFlags.Fin | TcpFlags.Ack;
    public const TcpFlags FinPshAck = TcpFlags.Fin | TcpFlags.Psh | TcpFlags.Ack;
    public const TcpFlags Rst = TcpFlags.Rst;
    public const TcpFlags RstAck = TcpFlags.Rst | TcpFlags.Ack;
}

/// <summary>A segment the stack sent: its header as the stack's own <see cref="TcpRepr"/>, its payload, and the virtual time it left.</summary>
internal sealed record TraceSegment(TcpRepr Header, byte[] Payload, long AtMicroseconds)
{
    public TcpFlags Flags => Header.Flags;

    public uint Seq => Header.SequenceNumber;

    public uint Ack => Header.AcknowledgmentNumber;

    public ushort Window => Header.Window;

    public TcpOptions Options => Header.Options;

    public ushort SourcePort => Header.SourcePort;

    public ushort DestinationPort => Header.DestinationPort;

    public int Length => Payload.Length;

    /// <summary>Sequence space the segment occupies (payload, SYN and FIN).</summary>
    public uint SequenceLength => (uint)Payload.Length + ((Flags & TcpFlags.Syn) != 0 ? 1u : 0) + ((Flags & TcpFlags.Fin) != 0 ? 1u : 0);

    public TimeSpan At => TimeSpan.FromTicks(AtMicroseconds * 10);

    public override string ToString() => $"{At.TotalMilliseconds}ms {SourcePort}>{DestinationPort} [{Flags}] seq={Seq} ack={Ack} win={Window} len={Payload.Length}";
}

/// <summary>
/// The remote TCP, played by hand. One <see cref="VsoStack"/> sits on one end of a zero-delay simulated wire;
/// the test owns the other end: it answers the stack's ARP requests, sends hand-built segments with valid
/// checksums, and reads back every TCP segment the stack emits. Time is virtual and moves only inside
/// <see cref="Expect(TcpFlags, uint?, uint?)"/>, <see cref="ExpectNothing"/> and <see cref="Advance"/>.
/// </summary>
internal sealed class RawPeer : IFrameReceiver, IDisposable
{
    public static readonly Ipv4Address PeerAddress = Ipv4Address.Parse("198.18.0.1");
    public static readonly Ipv4Address StackAddress = Ipv4Address.Parse("198.18.0.2");

    /// <summary>The stack's ARP entries live 60 s and are refreshed only by ARP: keep ours fresh so no segment waits on ARP.</summary>
    private static readonly long ArpRefreshMicroseconds = 30_000_000;

    private readonly SimulatedLink _link;
    private readonly TransmitBatch _batch;
    private readonly Queue<TraceSegment> _received = new();
    private long _lastArpRefresh;
    private ushort _ipId;

    /// <summary>The remote TCP's address when the peer plays the stack's gateway: off the stack's subnet.</summary>
    public static readonly Ipv4Address OffLinkAddress = Ipv4Address.Parse("198.18.1.1");

    /// <param name="configure">Adjusts the stack's TCP settings.</param>
    /// <param name="asGateway">
    /// The peer is the stack's gateway (at <see cref="PeerAddress"/>) and the remote TCP sits behind it at
    /// <see cref="OffLinkAddress"/>; the peer does not announce itself, so the stack must resolve the gateway first.
    /// </param>
    /// <param name="wireMtu">
    /// When above 1500: the wire carries frames up to this MTU while the stack is told 1500 (its MSS stays 1460), so the
    /// peer can send segments that a receive offload (GRO/LRO) would have coalesced (<see cref="CoalescingLink"/>).
    /// </param>
    public RawPeer(Action<TcpSettings>? configure = null, bool asGateway = false, int wireMtu = 1500)
    {
        SynchronizationContext.SetSynchronizationContext(null);
        Clock = new VirtualClock();
        var (a, wire) = SimulatedLink.CreatePair(Clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.Zero, Mtu = wireMtu });
        ILink b = wireMtu > 1500 ? new CoalescingLink(wire, 1500) : wire;
        _link = a;
        _batch = new TransmitBatch(4, EthernetFrame.HeaderLength + a.Mtu);
        Settings = new TcpSettings { IsnKey = [1, 2, 3, 4] };
        configure?.Invoke(Settings);
        Remote = asGateway ? OffLinkAddress : PeerAddress;
        Stack = new VsoStack(b, new VsoStackOptions { Address = StackAddress, PrefixLength = 24, Gateway = asGateway ? PeerAddress : default, Tcp = Settings, InlineContinuations = true }, Clock);
        if (!asGateway)
        {
            SendArp(ArpOperation.Request, MacAddress.Zero, StackAddress, MacAddress.Broadcast);
        }

        Pump();
        _received.Clear();
    }

    public VirtualClock Clock { get; }

    /// <summary>The remote TCP's IPv4 address: <see cref="PeerAddress"/>, or <see cref="OffLinkAddress"/> behind a gateway.</summary>
    public Ipv4Address Remote { get; }

    public VsoStack Stack { get; }

    public TcpSettings Settings { get; }

    /// <summary>The peer's TCP port.</summary>
    public ushort Port { get; set; } = 40000;

    /// <summary>The stack's TCP port that <see cref="Send(TcpFlags, uint, uint, ushort, TcpOptions?, byte[])"/> addresses.</summary>
    public ushort StackPort { get; set; } = 80;

    public TimeSpan Now => TimeSpan.FromTicks(Clock.NowMicroseconds * 10);

    /// <summary>Segments the stack sent that the test has not looked at yet.</summary>
    public int Pending => _received.Count;

    /// <summary>The only connection in the stack's table (null when none).</summary>
    public TcpConnection? Connection => Stack.Core.Tcp.Connections.SingleOrDefault();

    /// <summary>State of the stack's only connection; TIME-WAIT when only a TIME-WAIT entry is left; Closed when both tables are empty.</summary>
    public TcpState State => Connection?.State ?? (Stack.Core.Tcp.TimeWait.Count > 0 ? TcpState.TimeWait : TcpState.Closed);

    // ---- Sending ----

    /// <summary>Sends <paramref name="header"/> (ports as given) with <paramref name="payload"/>, checksummed, to the stack.</summary>
    public void Send(in TcpRepr header, byte[]? payload = null) => Send(header, payload, pump: true);

    /// <summary>Puts the segment on the wire; with <paramref name="pump"/> false the stack has not polled yet (see <see cref="Collect"/>).</summary>
    public void Send(in TcpRepr header, byte[]? payload, bool pump)
    {
        payload ??= [];
        var frame = _batch.Begin();
        EthernetFrame.WriteHeader(frame, Stack.Core.Link.HardwareAddress, _link.HardwareAddress, EtherType.Ipv4);
        var ip = frame[EthernetFrame.HeaderLength..];
        var tcp = ip[Ipv4Packet.MinHeaderLength..];
        var headerLength = header.Emit(tcp);
        payload.CopyTo(tcp[headerLength..]);
        var sum = default(ChecksumAccumulator);
        sum.Add(payload);
        TcpChecksum.Finish(tcp, headerLength, Remote, StackAddress, payload.Length, sum);
        Ipv4Packet.WriteHeader(ip, Remote, StackAddress, IpProtocol.Tcp, headerLength + payload.Length, _ipId++);
        _batch.Commit(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + headerLength + payload.Length);
        _link.Transmit(_batch);
        _batch.Clear();
        if (pump)
        {
            Pump();
        }
    }

    /// <summary>Takes what the stack has put on the wire, without polling it: the segments of the turns run so far.</summary>
    public int Collect()
    {
        _link.Receive(this, int.MaxValue);
        return _received.Count;
    }

    /// <summary>Sends a segment from <see cref="Port"/> to <see cref="StackPort"/>.</summary>
    public void Send(TcpFlags flags, uint seq, uint ack = 0, ushort window = 65535, TcpOptions? options = null, byte[]? payload = null) =>
        Send(
            new TcpRepr
            {
                SourcePort = Port,
                DestinationPort = StackPort,
                SequenceNumber = seq,
                AcknowledgmentNumber = ack,
                Flags = flags,
                Window = window,
                Options = options ?? TcpOptions.None,
            },
            payload);

    // ---- Receiving ----

    /// <summary>Runs virtual time until the stack sends a segment (at most <paramref name="within"/>), returns it without checking.</summary>
    public TraceSegment Next(TimeSpan? within = null)
    {
        Assert.True(RunUntil(() => _received.Count > 0, within ?? TimeSpan.FromMinutes(5)), $"The stack sent nothing within {within ?? TimeSpan.FromMinutes(5)} (now {Now}).");
        return _received.Dequeue();
    }

    /// <summary>The next segment the stack sends must carry exactly <paramref name="flags"/> (and seq/ack when given).</summary>
    public TraceSegment Expect(TcpFlags flags, uint? seq = null, uint? ack = null, TimeSpan? within = null)
    {
        var s = Next(within);
        Assert.True(flags == s.Flags, $"Expected [{flags}], got {s}");
        if (seq is { } q)
        {
            Assert.True(q == s.Seq, $"Expected seq={q}, got {s}");
        }

        if (ack is { } a)
        {
            Assert.True(a == s.Ack, $"Expected ack={a}, got {s}");
        }

        return s;
    }

    /// <summary>The stack sends nothing for <paramref name="duration"/> of virtual time.</summary>
    public void ExpectNothing(TimeSpan duration)
    {
        RunUntil(() => _received.Count > 0, duration);
        Assert.True(_received.Count == 0, $"Expected silence for {duration}, got {(_received.Count > 0 ? _received.Peek() : null)}");
    }

    /// <summary>Nothing already sent and nothing at this instant.</summary>
    public void ExpectNothing() => ExpectNothing(TimeSpan.Zero);

    /// <summary>Lets time pass, handling every event; segments the stack sends meanwhile are kept for Expect.</summary>
    public void Advance(TimeSpan duration) => RunUntil(static () => false, duration);

    /// <summary>Runs until <paramref name="task"/> completes (at most <paramref name="within"/>).</summary>
    public void Await(Task task, TimeSpan? within = null) =>
        Assert.True(RunUntil(() => task.IsCompleted, within ?? TimeSpan.FromMinutes(5)), "The task did not complete in virtual time.");

    public T Await<T>(Task<T> task, TimeSpan? within = null)
    {
        Await((Task)task, within);
        return task.GetAwaiter().GetResult();
    }

    /// <summary>One receive, run at this instant: the bytes read (empty at end of stream). Fails if the receive is still pending.</summary>
    public byte[] Read(VsoConnection connection, int max = 65536)
    {
        var buffer = new byte[max];
        var receiving = connection.ReceiveAsync(buffer).AsTask();
        Assert.True(RunUntil(() => receiving.IsCompleted, TimeSpan.Zero), "The receive is still pending.");
        return buffer[..receiving.GetAwaiter().GetResult()];
    }

    /// <summary>Drops segments not yet looked at.</summary>
    public void Discard() => _received.Clear();

    /// <summary>Polls the stack and the wire until both are idle at the current instant.</summary>
    public void Pump()
    {
        bool progress;
        do
        {
            progress = Stack.Core.Poll();
            progress |= _link.Receive(this, int.MaxValue) > 0;
        }
        while (progress);
    }

    public bool RunUntil(Func<bool> done, TimeSpan limit)
    {
        var end = Clock.NowMicroseconds + (limit.Ticks / 10);
        while (true)
        {
            Pump();
            if (done())
            {
                return true;
            }

            var now = Clock.NowMicroseconds;
            if (now >= end)
            {
                return false;
            }

            var next = Math.Min(Stack.Core.NextEventMicroseconds, _link.NextEventMicroseconds);
            var target = Math.Min(Math.Max(next, now + 1), end);
            var refreshAt = _lastArpRefresh + ArpRefreshMicroseconds;
            if (refreshAt <= target)
            {
                Clock.AdvanceTo(refreshAt);
                SendArp(ArpOperation.Request, MacAddress.Zero, StackAddress, MacAddress.Broadcast);
                continue;
            }

            Clock.AdvanceTo(target);
        }
    }

    void IFrameReceiver.OnFrame(ReadOnlySpan<byte> frame)
    {
        Assert.Equal(WireStatus.Ok, EthernetFrame.TryParse(frame, out var ethernet));
        if (ethernet.EtherType == EtherType.Arp)
        {
            Assert.Equal(WireStatus.Ok, ArpPacket.TryParse(ethernet.Payload, out var arp));
            if (arp.Operation == ArpOperation.Request && arp.TargetProtocol == PeerAddress)
            {
                SendArp(ArpOperation.Reply, arp.SenderHardware, arp.SenderProtocol, arp.SenderHardware);
            }

            return;
        }

        Assert.Equal(EtherType.Ipv4, ethernet.EtherType);
        Assert.Equal(_link.HardwareAddress, ethernet.Destination); // the peer's (or the gateway's) resolved address
        Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(ethernet.Payload, out var ip));
        Assert.Equal(IpProtocol.Tcp, ip.Protocol);
        Assert.Equal(StackAddress, ip.Source);
        Assert.Equal(Remote, ip.Destination);
        Assert.Equal(WireStatus.Ok, TcpRepr.TryParse(ip.Payload, ip.Source, ip.Destination, out var header, out var payload));
        _received.Enqueue(new TraceSegment(header, payload.ToArray(), Clock.NowMicroseconds));
    }

    private void SendArp(ArpOperation operation, MacAddress targetHardware, Ipv4Address targetProtocol, MacAddress destination)
    {
        var frame = _batch.Begin();
        EthernetFrame.WriteHeader(frame, destination, _link.HardwareAddress, EtherType.Arp);
        var length = ArpPacket.Write(frame[EthernetFrame.HeaderLength..], operation, _link.HardwareAddress, PeerAddress, targetHardware, targetProtocol);
        var total = Math.Max(EthernetFrame.HeaderLength + length, 60);
        frame[(EthernetFrame.HeaderLength + length)..total].Clear();
        _batch.Commit(total);
        _link.Transmit(_batch);
        _batch.Clear();
        _lastArpRefresh = Clock.NowMicroseconds;
    }

    // ---- Common openings ----

    /// <summary>Options for a SYN: MSS only unless more are given.</summary>
    public static TcpOptions SynOptions(ushort mss = 1460, sbyte windowScale = -1, bool sackPermitted = false, uint? tsVal = null)
    {
        var o = TcpOptions.None;
        o.Mss = mss;
        o.WindowScale = windowScale;
        o.SackPermitted = sackPermitted;
        if (tsVal is { } ts)
        {
            o.HasTimestamp = true;
            o.TsVal = ts;
        }

        return o;
    }

    /// <summary>
    /// Passive open on <see cref="StackPort"/>: SYN(seq=<paramref name="isn"/>) → SYN-ACK → ACK, accepted.
    /// Returns the accepted connection and the stack's ISS.
    /// </summary>
    public (VsoConnection Connection, uint StackIss) OpenPassive(uint isn = 1000, TcpOptions? synOptions = null, ushort window = 65535)
    {
        using var listener = Stack.Listen(StackPort);
        var accepted = listener.AcceptAsync().AsTask();
        Send(TraceFlags.Syn, seq: isn, window: window, options: synOptions ?? SynOptions());
        var synAck = Expect(TraceFlags.SynAck, ack: isn + 1);
        Send(TraceFlags.Ack, seq: isn + 1, ack: synAck.Seq + 1, window: window);
        var connection = Await(accepted, TimeSpan.Zero);
        Assert.Equal(TcpState.Established, connection.GetInfo().State);
        return (connection, synAck.Seq);
    }

    /// <summary>Active open to the peer's <see cref="Port"/>: SYN → SYN-ACK(seq=<paramref name="isn"/>) → ACK. Sets <see cref="StackPort"/>.</summary>
    public (VsoConnection Connection, uint StackIss) OpenActive(uint isn = 5000, TcpOptions? synAckOptions = null, ushort window = 65535)
    {
        var connecting = Stack.ConnectAsync(Remote, Port);
        var syn = Expect(TraceFlags.Syn, ack: 0);
        StackPort = syn.SourcePort;
        Send(TraceFlags.SynAck, seq: isn, ack: syn.Seq + 1, window: window, options: synAckOptions ?? SynOptions());
        Expect(TraceFlags.Ack, seq: syn.Seq + 1, ack: isn + 1);
        var connection = Await(connecting, TimeSpan.Zero);
        Assert.Equal(TcpState.Established, connection.GetInfo().State);
        return (connection, syn.Seq);
    }

    public void Dispose()
    {
        Stack.Dispose();
        _link.Dispose();
    }
}

internal static class TraceAssert
{
    /// <summary>The task failed with a <see cref="TcpConnectionException"/> carrying <paramref name="error"/>.</summary>
    public static void FailedWith(Task task, TcpError error)
    {
        Assert.True(task.IsCompleted, "The task is still pending.");
        Assert.True(task.IsFaulted, $"The task did not fail (status {task.Status}).");
        var ex = Assert.IsType<TcpConnectionException>(task.Exception!.InnerException);
        Assert.Equal(error, ex.Error);
    }

    /// <summary>The result of a task that has completed (virtual time already ran it).</summary>
    public static T Result<T>(Task<T> task)
    {
        Assert.True(task.IsCompleted, "The task is still pending.");
        return task.GetAwaiter().GetResult();
    }

    public static byte[] Bytes(int length, byte start = 0)
    {
        var b = new byte[length];
        for (var i = 0; i < length; i++)
        {
            b[i] = (byte)(start + i);
        }

        return b;
    }
}
