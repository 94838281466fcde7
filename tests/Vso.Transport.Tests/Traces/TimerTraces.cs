using Vso.Transport.Api;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>Timers and windows: delayed ACK, persist, Nagle, keepalive, reassembly with SACK, retransmission, TIME-WAIT reuse.</summary>
public sealed class TimerTraces
{
    private const uint R = 1001;

    [Fact]
    public void One_small_segment_is_ACKed_after_the_delayed_ACK_time()
    {
        using var peer = new RawPeer(s => s.DelayedAck = TimeSpan.FromMilliseconds(40));
        var (_, iss) = peer.OpenPassive();
        peer.Send(PshAck, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(10));
        var sent = peer.Now;
        peer.ExpectNothing(TimeSpan.FromMilliseconds(39));
        var ack = peer.Expect(Ack, seq: iss + 1, ack: R + 10, within: TimeSpan.FromMilliseconds(1));
        Assert.Equal(TimeSpan.FromMilliseconds(40), ack.At - sent);
    }

    [Fact]
    public void Two_full_segments_are_ACKed_at_once()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive();
        peer.Send(Ack, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(1460));
        peer.ExpectNothing();
        peer.Send(PshAck, seq: R + 1460, ack: iss + 1, payload: TraceAssert.Bytes(1460));
        peer.Expect(Ack, seq: iss + 1, ack: R + 2920, within: TimeSpan.Zero);
        peer.ExpectNothing(TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void Zero_window_is_probed_with_backoff_until_it_opens()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(window: 0);
        var s = iss + 1;
        var rto = connection.GetInfo().Rto;
        var sending = connection.SendAsync(TraceAssert.Bytes(100));
        peer.ExpectNothing();
        var blocked = peer.Now;

        // Probes carry SEG.SEQ = SND.UNA - 1 and no data, so the receiver must answer with its window.
        var elapsed = TimeSpan.Zero;
        for (var i = 0; i < 3; i++)
        {
            elapsed += rto * (1 << i);
            var probe = peer.Expect(Ack, seq: s - 1, ack: R);
            Assert.Equal(0, probe.Length);
            Assert.Equal(elapsed, probe.At - blocked);
            peer.Send(Ack, seq: R, ack: s, window: 0);
            peer.ExpectNothing();
        }

        Assert.Equal(3, connection.GetInfo().ZeroWindowProbes);
        peer.Send(Ack, seq: R, ack: s, window: 1000);
        var data = peer.Expect(PshAck, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(100, data.Length);
        peer.Send(Ack, seq: R, ack: s + 100, window: 1000);
        peer.Await(sending, TimeSpan.Zero);
    }

    [Fact]
    public void Nagle_holds_a_small_segment_while_data_is_unacknowledged()
    {
        using var peer = new RawPeer(s => s.Nagle = true);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));
        peer.Send(Ack, seq: R, ack: s + 10);
        var second = peer.Expect(PshAck, seq: s + 10, within: TimeSpan.Zero);
        Assert.Equal(10, second.Length);
    }

    [Fact]
    public void Nagle_with_Minshall_sends_a_short_tail_behind_full_segments_but_holds_a_second_small_one()
    {
        // draft-minshall-nagle-01: unacknowledged full-size segments do not hold a small one; an unacknowledged
        // small segment does.
        using var peer = new RawPeer(s => s.Nagle = true);
        var (connection, iss) = peer.OpenPassive(1000, RawPeer.SynOptions(mss: 536));
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(536 + 100));
        Assert.Equal(536, peer.Expect(Ack, seq: s, within: TimeSpan.Zero).Length);
        Assert.Equal(100, peer.Expect(PshAck, seq: s + 536, within: TimeSpan.Zero).Length);
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));
        peer.Send(Ack, seq: 1001, ack: s + 536);
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));
        peer.Send(Ack, seq: 1001, ack: s + 636);
        Assert.Equal(10, peer.Expect(PshAck, seq: s + 636, within: TimeSpan.Zero).Length);
    }

    [Fact]
    public void Nagle_never_holds_a_full_segment_shortened_by_SACK_blocks()
    {
        using var peer = new RawPeer(s => s.Nagle = true);
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(sackPermitted: true));
        var s = iss + 1;

        // A segment beyond RCV.NXT: the stack holds out-of-order data, so each of its segments carries a SACK block
        // (12 bytes of options) and a full segment is 1448 bytes, not the MSS of 1460. The second one is as full as a
        // segment can be now: Nagle (RFC 9293 §3.7.4) holds only smaller ones.
        peer.Send(PshAck, seq: R + 100, ack: s, payload: TraceAssert.Bytes(100));
        peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        _ = connection.SendAsync(TraceAssert.Bytes(3 * 1460));
        var first = peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        var second = peer.Expect(Ack, seq: s + (uint)first.Length, ack: R, within: TimeSpan.Zero);
        Assert.Equal(1448, first.Length);
        Assert.Equal(1448, second.Length);
    }

    [Fact]
    public void Without_Nagle_small_segments_go_at_once()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: s + 10, within: TimeSpan.Zero);
    }

    [Fact]
    public void Keepalive_probes_an_idle_connection_and_fails_it_when_unanswered()
    {
        using var peer = new RawPeer(s =>
        {
            s.Keepalive = true;
            s.KeepaliveIdle = TimeSpan.FromSeconds(10);
            s.KeepaliveInterval = TimeSpan.FromSeconds(1);
            s.KeepaliveProbes = 3;
        });
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var established = peer.Now;
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();

        // RFC 9293 §3.8.4: SEG.SEQ = SND.NXT - 1, no data; a live peer answers, and idle time starts over.
        var probe = peer.Expect(Ack, seq: s - 1, ack: R);
        Assert.Equal(TimeSpan.FromSeconds(10), probe.At - established);
        peer.Send(Ack, seq: R, ack: s);
        var answered = peer.Now;

        var first = peer.Expect(Ack, seq: s - 1, ack: R);
        Assert.Equal(TimeSpan.FromSeconds(10), first.At - answered);
        Assert.Equal(TimeSpan.FromSeconds(1), peer.Expect(Ack, seq: s - 1, ack: R).At - first.At);
        Assert.Equal(TimeSpan.FromSeconds(2), peer.Expect(Ack, seq: s - 1, ack: R).At - first.At);
        Assert.False(receiving.IsCompleted);
        peer.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(TimeSpan.FromSeconds(3), peer.Now - first.At);
        TraceAssert.FailedWith(receiving, TcpError.TimedOut);
        Assert.Equal(0, peer.Stack.ConnectionCount);
    }

    [Fact]
    public void Out_of_order_segments_are_reassembled_and_SACKed()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(1000, RawPeer.SynOptions(sackPermitted: true));
        var s = iss + 1;
        var data = TraceAssert.Bytes(300);

        peer.Send(PshAck, seq: R + 200, ack: s, payload: data[200..]);
        var a3 = peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        AssertSack(a3, (R + 200, R + 300));

        peer.Send(Ack, seq: R + 100, ack: s, payload: data[100..200]);
        var a2 = peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        AssertSack(a2, (R + 100, R + 300));

        peer.Send(Ack, seq: R, ack: s, payload: data[..100]);
        var a1 = peer.Expect(Ack, seq: s, ack: R + 300, within: TimeSpan.Zero);
        Assert.Equal(0, a1.Options.SackBlockCount);

        Assert.Equal(data, peer.Read(connection));
        var again = connection.ReceiveAsync(new byte[16]).AsTask();
        peer.Advance(TimeSpan.FromSeconds(1));
        Assert.False(again.IsCompleted);

        static void AssertSack(TraceSegment ack, params (uint Left, uint Right)[] blocks)
        {
            Assert.Equal(blocks.Length, ack.Options.SackBlockCount);
            for (var i = 0; i < blocks.Length; i++)
            {
                Assert.Equal(new SackBlock(blocks[i].Left, blocks[i].Right), ack.Options.GetSackBlock(i));
            }
        }
    }

    [Fact]
    public void Unacknowledged_data_is_retransmitted_after_the_RTO_doubling_each_time()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var rto = connection.GetInfo().Rto;
        var data = TraceAssert.Bytes(100, 7);
        var sending = connection.SendAsync(data);
        var original = peer.Expect(PshAck, seq: s, ack: R, within: TimeSpan.Zero);
        var elapsed = TimeSpan.Zero;
        for (var i = 0; i < 3; i++)
        {
            elapsed += rto * (1 << i);
            var again = peer.Next();
            Assert.Equal(TcpFlags.Ack, again.Flags & ~TcpFlags.Psh);
            Assert.Equal(s, again.Seq);
            Assert.Equal(data, again.Payload);
            Assert.Equal(elapsed, again.At - original.At);
        }

        peer.Send(Ack, seq: R, ack: s + 100);
        peer.Await(sending, TimeSpan.Zero);
        Assert.Equal(3, connection.GetInfo().Timeouts);
        peer.ExpectNothing(TimeSpan.FromMinutes(1));
    }

    [Fact]
    public void Connection_times_out_after_MaxRetransmissions_and_the_send_fails()
    {
        using var peer = new RawPeer(s => s.MaxRetransmissions = 3);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var rto = connection.GetInfo().Rto;
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();
        var sending = connection.SendAsync(TraceAssert.Bytes(100));
        var original = peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(s, peer.Next().Seq);
        }

        Assert.False(sending.IsCompleted);
        peer.RunUntil(() => sending.IsCompleted, TimeSpan.FromMinutes(1));
        Assert.Equal(rto * 15, peer.Now - original.At); // 1 + 2 + 4 + 8 RTOs
        TraceAssert.FailedWith(sending, TcpError.TimedOut);
        TraceAssert.FailedWith(receiving, TcpError.TimedOut);
        Assert.Equal(0, peer.Stack.ConnectionCount);
    }

    [Fact]
    public void New_SYN_with_a_higher_sequence_number_reuses_a_TIME_WAIT_connection()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        using var listener = peer.Stack.Listen(80);
        peer.Send(Syn, seq: 1000);
        var synAck = peer.Expect(SynAck, ack: R);
        var s = synAck.Seq + 1;
        peer.Send(Ack, seq: R, ack: s);
        Assert.True(listener.TryAccept(out var first));
        first.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        // An old SYN (below RCV.NXT) does not: it is answered as any unacceptable segment.
        peer.Send(Syn, seq: 500);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        // RFC 9293 §3.6.1: a new SYN beyond the old RCV.NXT starts a new incarnation.
        peer.Advance(TimeSpan.FromSeconds(1));
        peer.Send(Syn, seq: 100_000);
        var synAck2 = peer.Expect(SynAck, ack: 100_001, within: TimeSpan.Zero);
        Assert.Equal(TcpState.SynReceived, peer.State);
        peer.Send(Ack, seq: 100_001, ack: synAck2.Seq + 1);
        Assert.Equal(TcpState.Established, peer.State);
        Assert.True(listener.TryAccept(out var second));
        Assert.Equal(TcpState.Established, second.GetInfo().State);
        Assert.Equal(TcpState.Closed, first.GetInfo().State);
    }

    [Fact]
    public void New_SYN_with_a_newer_timestamp_reuses_a_TIME_WAIT_connection_even_below_the_old_sequence_numbers()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        using var listener = peer.Stack.Listen(80);
        var (s, tsRecent) = CloseIntoTimeWaitWithTimestamps(peer, listener);

        // RFC 6191 §2: both incarnations use timestamps and the SYN's is newer than TS.Recent: the timestamp decides,
        // even though the sequence number lies below the old RCV.NXT.
        peer.Advance(TimeSpan.FromSeconds(1));
        peer.Send(Syn, seq: 500, options: RawPeer.SynOptions(tsVal: tsRecent + 1000));
        var synAck = peer.Expect(SynAck, ack: 501, within: TimeSpan.Zero);
        Assert.True(synAck.Options.HasTimestamp);
        Assert.Equal(tsRecent + 1000, synAck.Options.TsEcr);
        Assert.Equal(TcpState.SynReceived, peer.State);
        Assert.NotEqual(s, synAck.Seq);
    }

    [Fact]
    public void New_SYN_with_an_older_timestamp_does_not_reuse_a_TIME_WAIT_connection_whatever_its_sequence_number()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        using var listener = peer.Stack.Listen(80);
        var (s, tsRecent) = CloseIntoTimeWaitWithTimestamps(peer, listener);

        // RFC 6191 §2: a timestamp older than TS.Recent may belong to the old incarnation; a higher sequence number
        // does not help. The old connection answers it (RFC 7323 §5.3 PAWS: an ACK).
        peer.Send(Syn, seq: 100_000, options: RawPeer.SynOptions(tsVal: tsRecent - 1));
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        // An equal timestamp leaves the decision to the sequence number: below RCV.NXT, no. (The ACK to an
        // unacceptable SYN is sent at most once per 500 ms, Linux's tcp_invalid_ratelimit.)
        peer.Advance(TimeSpan.FromMilliseconds(500));
        peer.Send(Syn, seq: 500, options: RawPeer.SynOptions(tsVal: tsRecent));
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        // ... above it, yes.
        peer.Send(Syn, seq: 100_000, options: RawPeer.SynOptions(tsVal: tsRecent));
        peer.Expect(SynAck, ack: 100_001, within: TimeSpan.Zero);
        Assert.Equal(TcpState.SynReceived, peer.State);
    }

    /// <summary>Passive open with timestamps on both sides, then the stack closes first: TIME-WAIT with TS.Recent known.</summary>
    private static (uint StackNext, uint TsRecent) CloseIntoTimeWaitWithTimestamps(RawPeer peer, VsoListener listener)
    {
        const uint tsVal = 1_000_000;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions(tsVal: tsVal));
        var synAck = peer.Expect(SynAck, ack: R);
        Assert.True(synAck.Options.HasTimestamp);
        var s = synAck.Seq + 1;
        peer.Send(Ack, seq: R, ack: s, options: Timestamps(tsVal + 1, synAck.Options.TsVal));
        Assert.True(listener.TryAccept(out var first));
        first.ShutdownSend();
        var fin = peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s + 1, options: Timestamps(tsVal + 2, fin.Options.TsVal));
        var lastAck = peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(tsVal + 2, lastAck.Options.TsEcr); // TS.Recent
        Assert.Equal(TcpState.TimeWait, peer.State);
        return (s, tsVal + 2);
    }

    private static TcpOptions Timestamps(uint tsVal, uint tsEcr)
    {
        var o = TcpOptions.None;
        o.HasTimestamp = true;
        o.TsVal = tsVal;
        o.TsEcr = tsEcr;
        return o;
    }
}
