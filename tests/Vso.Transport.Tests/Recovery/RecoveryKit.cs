using Vso.Transport.Api;
using Vso.Transport.Tcp;
using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;
using Vso.Transport.Tests.Traces;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Recovery;

/// <summary>The recovery and congestion-control algorithms under test, by the names the tables use.</summary>
internal static class Algorithms
{
    public static readonly string[] Recoveries = ["rto", "newreno", "rack-tlp"];

    public static readonly string[] CongestionControls = ["newreno", "cubic"];

    /// <summary>The selector for a table column: "rack-tlp" is the default (NewReno when the peer has no SACK), the others run alone.</summary>
    public static Func<bool, ILossRecovery> Recovery(string name) => name switch
    {
        "rto" => static _ => new RtoRecovery(),
        "newreno" => static _ => new NewRenoRecovery(),
        "rack-tlp" => TcpSettings.DefaultLossRecovery,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown loss recovery"),
    };

    public static Func<ICongestionControl> Congestion(string name) => name switch
    {
        "newreno" => static () => new NewRenoCongestionControl(),
        "cubic" => static () => new CubicCongestionControl(),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown congestion control"),
    };

    public static Action<TcpSettings> Configure(string recovery, string congestion, Action<TcpSettings>? more = null) => tcp =>
    {
        tcp.LossRecovery = Recovery(recovery);
        tcp.CongestionControl = Congestion(congestion);
        more?.Invoke(tcp);
    };
}

/// <summary>
/// The remote TCP as a SACK receiver, played over <see cref="RawPeer"/>: it opens the connection with
/// SACK-permitted and timestamps in its SYN, keeps the receive state of a real receiver (RCV.NXT and the
/// out-of-order ranges), and answers with ACKs that carry timestamps and SACK blocks in RFC 2018 §4 order
/// (the block holding the most recent segment first). The wire has no delay; the round-trip time is what
/// the test lets pass between a segment and its ACK, so every RTT in a trace is chosen by the test.
/// </summary>
internal sealed class SackPeer : IDisposable
{
    /// <summary>The peer's initial sequence number; its data (none here) would start at <see cref="R"/>.</summary>
    public const uint Isn = 1000;

    public const uint R = Isn + 1;

    private readonly List<Range> _ranges = [];
    private uint _tsRecent;
    private uint _lastAckSent;
    private int _touch;

    public SackPeer(Action<TcpSettings>? configure = null) => Peer = new RawPeer(configure);

    public RawPeer Peer { get; }

    public VsoConnection Connection { get; private set; } = null!;

    /// <summary>The stack's first data sequence number (ISS + 1).</summary>
    public uint S { get; private set; }

    /// <summary>Payload bytes per full segment the stack sends.</summary>
    public int Mss { get; private set; }

    /// <summary>RCV.NXT of the peer.</summary>
    public uint ReceiveNext { get; private set; }

    public TcpConnectionInfo Info => Connection.GetInfo();

    /// <summary>Sequence number of the stack's segment number <paramref name="index"/> (full segments from S).</summary>
    public uint Seg(int index) => S + (uint)(index * Mss);

    /// <summary>
    /// Passive open on the stack with SACK and timestamps (and window scaling when <paramref name="windowScale"/> is
    /// not negative); the handshake ACK comes <paramref name="rtt"/> after the SYN-ACK, which gives the stack its
    /// first RTT sample.
    /// </summary>
    public void Open(TimeSpan rtt, bool sack = true, bool timestamps = true, sbyte windowScale = -1, ushort window = 65535)
    {
        using var listener = Peer.Stack.Listen(Peer.StackPort);
        var accepted = listener.AcceptAsync().AsTask();
        Peer.Send(TraceFlags.Syn, seq: Isn, window: window, options: RawPeer.SynOptions(1460, windowScale, sack, timestamps ? PeerTsVal() : null));
        var synAck = Peer.Expect(TraceFlags.SynAck, ack: Isn + 1, within: TimeSpan.Zero);
        Assert.Equal(sack, synAck.Options.SackPermitted);
        _tsRecent = synAck.Options.TsVal;
        _timestamps = timestamps;
        Peer.Advance(rtt);
        S = synAck.Seq + 1;
        ReceiveNext = S;
        _window = window;
        _windowScale = windowScale;
        Peer.Send(TraceFlags.Ack, seq: R, ack: S, window: window, options: AckOptions(null, []));
        _lastAckSent = S;
        Connection = Peer.Await(accepted, TimeSpan.Zero);
        Mss = Info.MaxSegmentSize;
    }

    private bool _timestamps;
    private ushort _window;
    private sbyte _windowScale;

    /// <summary>Window field of the ACKs (scaled by the shift the SYN offered, if any).</summary>
    public ushort Window
    {
        get => _window;
        set => _window = value;
    }

    /// <summary>Queues <paramref name="segments"/> full segments of data at the stack (pattern bytes).</summary>
    public Task SendData(int segments) => Connection.SendAsync(TraceAssert.Bytes(segments * Mss, 3));

    /// <summary>Every segment the stack has sent so far at this instant.</summary>
    public List<TraceSegment> Drain()
    {
        Peer.Pump();
        var list = new List<TraceSegment>();
        while (Peer.Pending > 0)
        {
            list.Add(Peer.Next(TimeSpan.Zero));
        }

        return list;
    }

    /// <summary>
    /// The receiver takes in <paramref name="segment"/>: RCV.NXT advances or an out-of-order range grows.
    /// Returns false when the data was already held (a duplicate: the next ACK carries a D-SACK if asked).
    /// </summary>
    public bool Receive(TraceSegment segment)
    {
        var start = segment.Seq;
        var end = segment.Seq + (uint)segment.Length;
        if (segment.Length == 0)
        {
            return true;
        }

        // RFC 7323 §4.3: TS.Recent from the segment that covers Last.ACK.sent.
        if (segment.Options.HasTimestamp && SequenceNumber.Le(start, _lastAckSent) && SequenceNumber.Lt(_lastAckSent, end))
        {
            _tsRecent = segment.Options.TsVal;
        }

        if (SequenceNumber.Le(end, ReceiveNext) || _ranges.Any(r => SequenceNumber.Le(r.Left, start) && SequenceNumber.Le(end, r.Right)))
        {
            return false;
        }

        if (SequenceNumber.Le(start, ReceiveNext))
        {
            ReceiveNext = end;
        }
        else
        {
            _ranges.Add(new Range(start, end, ++_touch));
        }

        // Merge ranges, and into RCV.NXT.
        _ranges.Sort((a, b) => SequenceNumber.Diff(a.Left, b.Left));
        for (var i = 0; i < _ranges.Count; i++)
        {
            var r = _ranges[i];
            if (SequenceNumber.Le(r.Left, ReceiveNext))
            {
                ReceiveNext = SequenceNumber.Max(ReceiveNext, r.Right);
                _ranges.RemoveAt(i--);
                continue;
            }

            if (i > 0 && SequenceNumber.Le(r.Left, _ranges[i - 1].Right))
            {
                var p = _ranges[i - 1];
                _ranges[i - 1] = new Range(p.Left, SequenceNumber.Max(p.Right, r.Right), Math.Max(p.Touch, r.Touch));
                _ranges.RemoveAt(i--);
            }
        }

        return true;
    }

    /// <summary>Sends the ACK a receiver sends now: RCV.NXT, timestamps, SACK blocks; a D-SACK block first when given.</summary>
    public void Ack((uint Left, uint Right)? dsack = null, uint? tsEcr = null)
    {
        var blocks = new List<(uint, uint)>();
        if (dsack is { } d)
        {
            blocks.Add(d);
        }

        foreach (var r in _ranges.OrderByDescending(r => r.Touch))
        {
            blocks.Add((r.Left, r.Right));
        }

        Peer.Send(TraceFlags.Ack, seq: R, ack: ReceiveNext, window: _window, options: AckOptions(tsEcr, blocks));
        _lastAckSent = ReceiveNext;
    }

    /// <summary>Sends an ACK with exactly these SACK blocks (hand-written), whatever the receive state.</summary>
    public void AckRaw(uint ack, params (uint Left, uint Right)[] blocks) =>
        Peer.Send(TraceFlags.Ack, seq: R, ack: ack, window: _window, options: AckOptions(null, blocks));

    /// <summary>Receives the segment and acknowledges it at once (a receiver that ACKs every segment).</summary>
    public void ReceiveAndAck(TraceSegment segment)
    {
        var fresh = Receive(segment);
        Ack(fresh ? null : (segment.Seq, segment.Seq + (uint)segment.Length));
    }

    /// <summary>The receiver's timestamp clock: milliseconds of virtual time.</summary>
    public uint PeerTsVal() => (uint)(Peer.Clock.NowMicroseconds / 1000) + 1;

    private TcpOptions AckOptions(uint? tsEcr, IReadOnlyList<(uint Left, uint Right)> blocks)
    {
        var o = TcpOptions.None;
        if (_timestamps)
        {
            o.HasTimestamp = true;
            o.TsVal = PeerTsVal();
            o.TsEcr = tsEcr ?? _tsRecent;
        }

        var max = _timestamps ? 3 : 4;
        for (var i = 0; i < blocks.Count && i < max; i++)
        {
            o.SetSackBlock(i, new SackBlock(blocks[i].Left, blocks[i].Right));
        }

        o.SackBlockCount = Math.Min(blocks.Count, max);
        return o;
    }

    /// <summary>
    /// Plays a lossy path in rounds of one RTT: every segment the stack has sent is delivered (or dropped when
    /// <paramref name="drop"/> says so; its arguments are the segment and how many times this sequence number was
    /// seen before) one RTT later and acknowledged at once, segment by segment; segments the ACKs release go in the
    /// next round. When the stack is silent the peer waits for its timers (probe, RTO) up to <paramref name="idleLimit"/>.
    /// Stops when <paramref name="done"/> holds. <paramref name="pending"/> are segments the test already took from
    /// the wire that the first round must still deliver. Returns every segment seen, in order.
    /// </summary>
    public List<TraceSegment> Play(TimeSpan rtt, Func<TraceSegment, int, bool> drop, Func<bool> done, TimeSpan? idleLimit = null, int maxRounds = 1000, IReadOnlyList<TraceSegment>? pending = null)
    {
        var seen = new List<TraceSegment>();
        var times = new Dictionary<uint, int>();
        for (var round = 0; round < maxRounds && !done(); round++)
        {
            var flight = round == 0 && pending is not null ? [.. pending, .. Drain()] : Drain();
            if (flight.Count == 0)
            {
                flight.Add(Peer.Next(idleLimit ?? TimeSpan.FromMinutes(2)));
                flight.AddRange(Drain());
            }

            Peer.Advance(rtt);
            foreach (var segment in flight)
            {
                seen.Add(segment);
                if (segment.Length == 0 && (segment.Flags & TcpFlags.Fin) == 0)
                {
                    continue;
                }

                times.TryGetValue(segment.Seq, out var before);
                times[segment.Seq] = before + 1;
                if (drop(segment, before))
                {
                    continue;
                }

                ReceiveAndAck(segment);
            }
        }

        Assert.True(done(), "The exchange did not finish.");
        return seen;
    }

    public void Dispose() => Peer.Dispose();

    private readonly record struct Range(uint Left, uint Right, int Touch);
}
