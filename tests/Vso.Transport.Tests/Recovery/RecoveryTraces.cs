using Vso.Transport.Tcp.Recovery;
using Vso.Transport.Tests.Traces;
using Vso.Transport.Wire;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Recovery;

/// <summary>
/// Loss recovery as packet traces in virtual time: the test plays the receiver (<see cref="SackPeer"/> over
/// <see cref="RawPeer"/>), chooses which segments are lost and when each ACK arrives, and checks exactly what the
/// stack resends and when. The round-trip time is <see cref="Rtt"/> throughout (the handshake ACK and every data
/// ACK come that long after the segment they answer), so SRTT = min RTT = 50 ms and the RTO is its 200 ms floor.
/// SYN and SYN-ACK loss are traced in <c>Traces/HandshakeTraces.cs</c>
/// (<c>SYN_is_retransmitted_with_exponential_backoff_then_connect_times_out</c>,
/// <c>Lost_SYN_ACK_is_repeated_when_the_SYN_is_repeated_and_on_timeout</c>) and zero-window probing of an idle
/// sender in <c>Traces/TimerTraces.cs</c> (<c>Zero_window_is_probed_with_backoff_until_it_opens</c>); the zero-window
/// trace here closes the window while recovery state (scoreboard, probe timer) is live.
/// </summary>
public sealed class RecoveryTraces(ITestOutputHelper output)
{
    private static readonly TimeSpan Rtt = TimeSpan.FromMilliseconds(50);

    [Fact]
    public void NewReno_fast_retransmit_after_three_duplicate_ACKs_with_limited_transmit()
    {
        using var p = new SackPeer(Algorithms.Configure("newreno", "newreno"));
        p.Open(Rtt, sack: false);
        Assert.Equal("newreno", p.Info.LossRecovery);
        var sending = p.SendData(14);
        var flight = p.Drain();
        Assert.Equal(Enumerable.Range(0, 10).Select(p.Seg), flight.Select(s => s.Seq)); // RFC 6928 initial window
        p.Peer.Advance(Rtt);

        // Segment 1 is lost. The ACK of segment 0 opens the window by one segment (slow start): two new ones go.
        p.ReceiveAndAck(flight[0]);
        var more = p.Drain();
        Assert.Equal([p.Seg(10), p.Seg(11)], more.Select(s => s.Seq));

        // Duplicate ACKs 1 and 2: limited transmit (RFC 3042) sends one new segment each, nothing is resent.
        p.ReceiveAndAck(flight[2]);
        var limited = p.Drain();
        p.ReceiveAndAck(flight[3]);
        limited.AddRange(p.Drain());
        Assert.Equal([p.Seg(12), p.Seg(13)], limited.Select(s => s.Seq));
        more.AddRange(limited);
        Assert.Equal(0, p.Info.RetransmittedSegments);

        // Duplicate ACK 3: fast retransmit of exactly the segment at SND.UNA, at once (RFC 5681 §3.2 step 2).
        p.ReceiveAndAck(flight[4]);
        var again = p.Peer.Expect(TcpFlags.Ack, seq: p.Seg(1), within: TimeSpan.Zero);
        Assert.Equal(p.Mss, again.Length);
        Assert.True(p.Info.InRecovery);
        Assert.Equal(1, p.Info.FastRetransmits);
        p.Peer.ExpectNothing();

        // The rest arrives, then the retransmission fills the hole: the send completes with no timeout.
        p.Peer.Advance(Rtt);
        foreach (var s in flight[5..].Concat(more).Append(again))
        {
            p.ReceiveAndAck(s);
        }

        var rest = p.Play(Rtt, static (_, _) => false, () => sending.IsCompleted);
        Assert.Equal(0, p.Info.Timeouts);
        Assert.Equal(1, p.Info.RetransmittedSegments);
        Assert.False(p.Info.InRecovery);
        output.WriteLine(string.Join("\n", rest));
    }

    [Fact]
    public void RACK_repairs_three_holes_in_one_window_with_SACK_and_no_timeout()
    {
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        p.Open(Rtt);
        Assert.Equal("rack-tlp", p.Info.LossRecovery);
        var sending = p.SendData(10);
        var flight = p.Drain();
        Assert.Equal(10, flight.Count);
        p.Peer.Advance(Rtt);
        int[] holes = [1, 4, 7];

        // The receiver SACKs around the holes: [2,4), then [5,7) [2,4), then [8,10) [5,7) [2,4).
        var trace = new List<TraceSegment>();
        foreach (var i in Enumerable.Range(0, 10).Except(holes))
        {
            p.ReceiveAndAck(flight[i]);
            trace.AddRange(p.Drain());
        }

        // The first hole goes at once: three segments SACKed above it and no reordering seen (RFC 8985 §6.2 step 4).
        Assert.NotEmpty(trace);
        Assert.Equal(p.Seg(1), trace[0].Seq);
        trace = p.Play(Rtt, static (_, _) => false, () => sending.IsCompleted, pending: trace);
        output.WriteLine(string.Join("\n", trace));

        Assert.Equal(holes.Select(p.Seg), trace.Where(s => s.Length > 0).Select(s => s.Seq));
        Assert.All(trace.Where(s => s.Length > 0), s => Assert.True(s.At < flight[0].At + TimeSpan.FromMilliseconds(200), $"{s} came after the RTO"));
        var info = p.Info;
        Assert.Equal(0, info.Timeouts);
        Assert.Equal(0, info.TailLossProbes);
        Assert.Equal(3, info.RetransmittedSegments);
        Assert.Equal(1, info.FastRetransmits);
        Assert.Equal(3, info.RackLosses);
    }

    [Theory]
    [InlineData("newreno")]
    [InlineData("cubic")]
    public void Isolated_losses_in_windows_of_four_or_more_segments_are_repaired_without_a_timeout(string congestion)
    {
        // The netsim's acceptance, made deterministic: 200 segments, the first transmission of every eighth one lost
        // (25 isolated losses, each with at least four segments of the same window after it). SACK+RACK must repair each
        // with exactly one retransmission and never wait for the RTO.
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", congestion));
        p.Open(Rtt);
        var sending = p.SendData(200);
        var lost = Enumerable.Range(0, 200).Where(i => i % 8 == 3).Select(p.Seg).ToHashSet();
        var trace = p.Play(Rtt, (s, before) => before == 0 && lost.Contains(s.Seq), () => sending.IsCompleted);
        var info = p.Info;
        output.WriteLine($"{congestion}: {trace.Count} segments, {info.RetransmittedSegments} retransmitted, {info.FastRetransmits} recoveries, cwnd {info.CongestionWindow}, done at {p.Peer.Now}");
        foreach (var g in trace.Where(s => s.Length > 0).GroupBy(s => s.Seq).Where(g => g.Count() > 2 || (g.Count() > 1 && !lost.Contains(g.Key))))
        {
            output.WriteLine($"unneeded: segment {(g.Key - p.S) / p.Mss}: {string.Join(", ", g)}");
        }

        Assert.Equal(0, info.Timeouts);
        Assert.Equal(0, info.TailLossProbes);
        Assert.Equal(lost.Count, info.RetransmittedSegments);
        Assert.Equal(lost.Order(), trace.GroupBy(s => s.Seq).Where(g => g.Count() > 1).Select(g => g.Key).Order());
    }

    [Fact]
    public void RACK_reordering_window_absorbs_reordering_without_a_retransmission()
    {
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        p.Open(Rtt);
        var first = p.SendData(10);
        var flight = p.Drain();
        p.Peer.Advance(Rtt);

        // Segment 2 is overtaken by segment 3: one SACKed segment above the hole, the reordering window
        // (min RTT / 4 = 12.5 ms) holds the retransmission back, and the hole fills 5 ms later.
        p.ReceiveAndAck(flight[0]);
        p.ReceiveAndAck(flight[1]);
        p.ReceiveAndAck(flight[3]);
        p.Peer.ExpectNothing(TimeSpan.FromMilliseconds(5));
        p.ReceiveAndAck(flight[2]);
        foreach (var s in flight[4..])
        {
            p.ReceiveAndAck(s);
        }

        p.Peer.Await(first, TimeSpan.Zero);
        Assert.Equal(0, p.Info.RetransmittedSegments);

        // Reordering has been seen (RFC 8985 §6.2 step 3): now even five segments SACKed above a hole, more than
        // DupThresh, wait for the reordering window, and the late segment 10 ms later fills it: nothing is resent.
        var second = p.SendData(10);
        var flight2 = p.Drain();
        Assert.Equal(10, flight2.Count);
        p.Peer.Advance(Rtt);
        p.ReceiveAndAck(flight2[0]);
        foreach (var s in flight2[2..7])
        {
            p.ReceiveAndAck(s);
        }

        p.Peer.ExpectNothing(TimeSpan.FromMilliseconds(10));
        p.ReceiveAndAck(flight2[1]);
        foreach (var s in flight2[7..])
        {
            p.ReceiveAndAck(s);
        }

        p.Peer.Await(second, TimeSpan.Zero);
        p.Peer.ExpectNothing(TimeSpan.FromSeconds(2));
        var info = p.Info;
        Assert.Equal(0, info.RetransmittedSegments);
        Assert.Equal(0, info.SpuriousRetransmissions);
        Assert.Equal(0, info.FastRetransmits);
        Assert.Equal(0, info.RackLosses);
        Assert.Equal(0, info.Timeouts);
    }

    [Fact]
    public void Tail_loss_is_repaired_by_a_probe_at_two_SRTT_not_by_the_RTO()
    {
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        p.Open(Rtt);
        var sending = p.SendData(10);
        var flight = p.Drain();
        p.Peer.Advance(Rtt);

        // The last two segments are lost; the peer acknowledges the first eight.
        foreach (var s in flight[..8])
        {
            p.ReceiveAndAck(s);
        }

        var lastAck = p.Peer.Now;
        var srtt = p.Info.SmoothedRtt;
        var rto = p.Info.Rto;

        // RTT samples are microsecond send-to-ACK times; send times within one tick are kept strictly increasing.
        Assert.InRange(srtt, Rtt - TimeSpan.FromMicroseconds(20), Rtt);

        // RFC 8985 §7.2: PTO = 2 * SRTT (more than one segment in flight); §7.3: no new data, so the last segment again.
        var probe = p.Peer.Next(TimeSpan.FromSeconds(1));
        output.WriteLine($"probe {probe}, srtt {srtt}, rto {rto}");
        Assert.Equal(p.Seg(9), probe.Seq);
        Assert.Equal(2 * srtt, probe.At - lastAck);
        Assert.True(probe.At - lastAck < rto);
        Assert.Equal(1, p.Info.TailLossProbes);

        // The probe's SACK one RTT later shows segment 8 lost (RACK): it is resent at once, and all is done.
        p.Peer.Advance(Rtt);
        p.ReceiveAndAck(probe);
        var repair = p.Peer.Expect(TcpFlags.Ack, seq: p.Seg(8), within: TimeSpan.Zero);
        p.Play(Rtt, static (_, _) => false, () => sending.IsCompleted, pending: [repair]);
        Assert.Equal(0, p.Info.Timeouts);
        Assert.Equal(2, p.Info.RetransmittedSegments);
    }

    [Fact]
    public void A_probe_met_by_silence_is_repeated_with_the_timeout_doubled_then_the_RTO_fires()
    {
        // MinRto of RFC 6298 (1 s) leaves room for the three probes (PTO, 2 PTO, 4 PTO = 700 ms) before the RTO.
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno", s => s.MinRto = TimeSpan.FromSeconds(1)));
        p.Open(Rtt);
        var sending = p.SendData(10);
        var flight = p.Drain();
        p.Peer.Advance(Rtt);
        foreach (var s in flight[..8])
        {
            p.ReceiveAndAck(s);
        }

        var lastAck = p.Peer.Now;
        var pto = 2 * p.Info.SmoothedRtt;

        // The last two segments are lost and so is every probe: each probe that meets silence is followed by another
        // after twice the timeout (as QUIC's PTO backs off, RFC 9002 §6.2.1), at most three, then the RTO (RFC 6298 §5),
        // armed by the first probe (RFC 8985 §7.3) and not pushed back by the others.
        var at = lastAck;
        for (var i = 0; i < 3; i++)
        {
            var probe = p.Peer.Next(TimeSpan.FromSeconds(2));
            output.WriteLine($"probe {probe}");
            Assert.Equal(p.Seg(9), probe.Seq);
            Assert.Equal(pto * (1 << i), probe.At - at);
            at = probe.At;
        }

        Assert.Equal(3, p.Info.TailLossProbes);
        Assert.Equal(0, p.Info.Timeouts);
        var timeout = p.Peer.Next(TimeSpan.FromSeconds(2));
        Assert.Equal(p.Seg(8), timeout.Seq);
        Assert.Equal(pto + TimeSpan.FromSeconds(1), timeout.At - lastAck);
        Assert.Equal(1, p.Info.Timeouts);
        p.Play(Rtt, static (_, _) => false, () => sending.IsCompleted, pending: [timeout]);
    }

    [Fact]
    public void Single_segment_tail_loss_probe_waits_two_SRTT_plus_the_worst_case_delayed_ACK()
    {
        // MinRto of RFC 6298 (1 s): the probe at 2*SRTT + 200 ms comes well before the RTO.
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno", s => s.MinRto = TimeSpan.FromSeconds(1)));
        p.Open(Rtt);
        var sending = p.SendData(1);
        var original = p.Peer.Expect(TcpFlags.Ack | TcpFlags.Psh, seq: p.Seg(0), within: TimeSpan.Zero);

        var probe = p.Peer.Next(TimeSpan.FromSeconds(2));
        Assert.Equal(p.Seg(0), probe.Seq);
        Assert.Equal((2 * Rtt) + TimeSpan.FromMilliseconds(200), probe.At - original.At); // RFC 8985 §7.2 WCDelAckT
        Assert.True(probe.At - original.At < p.Info.Rto);
        Assert.Equal(1, p.Info.TailLossProbes);
        Assert.Equal(0, p.Info.Timeouts);
        p.Peer.Advance(Rtt);
        p.ReceiveAndAck(probe);
        p.Peer.Await(sending, TimeSpan.Zero);
        Assert.Equal(0, p.Info.Timeouts);
    }

    [Fact]
    public void Tail_loss_probe_replaces_an_RTO_that_would_fire_at_the_same_time()
    {
        // Default MinRto 200 ms: with one segment in flight the PTO (2*SRTT + 200 ms = 300 ms) is capped at the RTO
        // expiration (RFC 8985 §7.2); the probe goes then, and the RTO is armed again after it (§7.3), so the tail is
        // repaired by the probe, not by a timeout.
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        p.Open(Rtt);
        var sending = p.SendData(1);
        var original = p.Peer.Expect(TcpFlags.Ack | TcpFlags.Psh, seq: p.Seg(0), within: TimeSpan.Zero);
        var rto = p.Info.Rto;
        var probe = p.Peer.Next(TimeSpan.FromSeconds(2));
        output.WriteLine($"original {original}, probe {probe}, rto {rto}");
        Assert.Equal(p.Seg(0), probe.Seq);
        Assert.True(probe.At - original.At <= rto, $"probe after {probe.At - original.At}, RTO {rto}");
        Assert.Equal(1, p.Info.TailLossProbes);
        Assert.Equal(0, p.Info.Timeouts);
        p.Peer.Advance(Rtt);
        p.ReceiveAndAck(probe);
        p.Peer.Await(sending, TimeSpan.Zero);
        Assert.Equal(0, p.Info.Timeouts);
    }

    [Fact]
    public void Lost_retransmission_is_detected_by_RACK_when_a_later_segment_is_SACKed()
    {
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        p.Open(Rtt);
        var sending = p.SendData(30);

        // Segment 1 is lost, and so is its first retransmission; segments sent after that retransmission are
        // SACKed, which tells RACK (RFC 8985 §6.2: sent before a delivered segment, older than RTT + window) that
        // the retransmission was lost too.
        var trace = p.Play(Rtt, (s, before) => s.Seq == p.Seg(1) && before < 2, () => sending.IsCompleted);
        output.WriteLine(string.Join("\n", trace));
        var sends = trace.Where(s => s.Seq == p.Seg(1) && s.Length > 0).ToList();
        Assert.Equal(3, sends.Count);
        Assert.Equal(0, p.Info.Timeouts);
        Assert.Equal(0, p.Info.TailLossProbes);
        Assert.Equal(2, p.Info.RetransmittedSegments);
    }

    [Fact]
    public void Lost_retransmission_with_nothing_sent_after_it_falls_back_to_the_RTO()
    {
        // RFC 8985 to the letter: no probe in recovery (the default probes; see the next trace).
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno", s => s.LossRecovery = static sack => sack ? new RackTlpRecovery { ProbeInRecovery = false } : new NewRenoRecovery()));
        p.Open(Rtt);
        var sending = p.SendData(10);

        // The retransmission of segment 1 is lost and nothing is sent after it: no later delivery can reveal the loss,
        // so the retransmission timer is the last resort (RFC 8985 §6.3, RFC 6298 §5).
        var trace = p.Play(Rtt, (s, before) => s.Seq == p.Seg(1) && before < 2, () => sending.IsCompleted);
        output.WriteLine(string.Join("\n", trace));
        Assert.Equal(3, trace.Count(s => s.Seq == p.Seg(1) && s.Length > 0));
        Assert.Equal(1, p.Info.Timeouts);
        Assert.Equal(0, p.Info.TailLossProbes); // no probe while in recovery (RFC 8985 §7.2)
    }

    [Fact]
    public void Lost_retransmission_with_nothing_sent_after_it_is_found_by_a_probe_in_recovery()
    {
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        p.Open(Rtt);
        var sending = p.SendData(10);

        // The same loss as above, with the default probe in recovery: no ACK for a PTO after the lost retransmission,
        // so a probe goes out; its SACK shows a segment sent after the retransmission delivered, RACK marks the
        // retransmission lost (RFC 8985 §6.2) and it is sent a third time, long before any RTO.
        var trace = p.Play(Rtt, (s, before) => s.Seq == p.Seg(1) && before < 2, () => sending.IsCompleted);
        output.WriteLine(string.Join("\n", trace));
        Assert.Equal(3, trace.Count(s => s.Seq == p.Seg(1) && s.Length > 0));
        Assert.Equal(0, p.Info.Timeouts);
        Assert.True(p.Info.TailLossProbes >= 1, $"{p.Info.TailLossProbes} probes");
    }

    [Theory]
    [InlineData("rto")]
    [InlineData("newreno")]
    [InlineData("rack-tlp")]
    public void Spurious_timeout_is_undone_by_Eifel_detection(string recovery)
    {
        using var p = new SackPeer(Algorithms.Configure(recovery, "newreno"));
        p.Open(Rtt);
        var sending = p.SendData(10);
        var flight = p.Drain();
        var before = p.Info;
        Assert.Equal(long.MaxValue, before.SlowStartThreshold);

        // The peer gets everything but its ACKs are held up past the RTO: the stack times out and resends.
        var resent = p.Peer.Next(TimeSpan.FromSeconds(2));
        while (p.Info.Timeouts == 0)
        {
            resent = p.Peer.Next(TimeSpan.FromSeconds(2));
        }

        Assert.Equal(p.Seg(0), resent.Seq);
        var collapsed = p.Info;
        Assert.Equal(1, collapsed.Timeouts);
        Assert.Equal(p.Mss, collapsed.CongestionWindow);

        // Now the ACK of the originals, echoing their timestamp (older than the retransmission's): RFC 3522 says the
        // timeout was spurious; the window and threshold of before it come back.
        foreach (var s in flight)
        {
            p.Receive(s);
        }

        p.Ack(tsEcr: flight[0].Options.TsVal);
        Assert.True(sending.IsCompleted || p.Peer.RunUntil(() => sending.IsCompleted, TimeSpan.Zero));
        var after = p.Info;
        output.WriteLine($"{recovery}: before cwnd {before.CongestionWindow} ssthresh {before.SlowStartThreshold}; timeout cwnd {collapsed.CongestionWindow} ssthresh {collapsed.SlowStartThreshold}; after cwnd {after.CongestionWindow} ssthresh {after.SlowStartThreshold}");
        Assert.Equal(1, after.Undos);
        Assert.True(after.CongestionWindow >= before.CongestionWindow, $"cwnd {after.CongestionWindow} < {before.CongestionWindow}");
        Assert.Equal(long.MaxValue, after.SlowStartThreshold);
        Assert.False(after.InRecovery);
    }

    [Fact]
    public void Spurious_fast_retransmit_is_undone_by_DSACK()
    {
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        p.Open(Rtt);
        var sending = p.SendData(10);
        var flight = p.Drain();
        var before = p.Info;
        p.Peer.Advance(Rtt);

        // Segment 1 is only late, but five segments are SACKed above it before reordering was ever seen: RACK
        // (DupThresh rule) retransmits it and the window is halved.
        p.ReceiveAndAck(flight[0]);
        foreach (var s in flight[2..7])
        {
            p.ReceiveAndAck(s);
        }

        var retransmission = p.Drain().First(s => s.Seq == p.Seg(1));
        Assert.Equal(1, p.Info.FastRetransmits);
        Assert.True(p.Info.SlowStartThreshold < long.MaxValue);

        // The original arrives, then the rest, then the retransmission: the receiver reports it with a D-SACK
        // (RFC 2883 §4), which proves the only retransmission of the episode spurious (RFC 3708): undo.
        p.ReceiveAndAck(flight[1]);
        foreach (var s in flight[7..])
        {
            p.ReceiveAndAck(s);
        }

        p.Peer.Await(sending, TimeSpan.Zero);
        p.ReceiveAndAck(retransmission);
        var after = p.Info;
        output.WriteLine($"before cwnd {before.CongestionWindow}; after cwnd {after.CongestionWindow} ssthresh {after.SlowStartThreshold}");
        Assert.Equal(1, after.SpuriousRetransmissions);
        Assert.Equal(1, after.Undos);
        Assert.Equal(long.MaxValue, after.SlowStartThreshold);
        Assert.True(after.CongestionWindow >= before.CongestionWindow, $"cwnd {after.CongestionWindow} < {before.CongestionWindow}");
        Assert.False(after.InRecovery);
        Assert.Equal(0, after.Timeouts);
    }

    [Fact]
    public void Zero_window_with_data_waiting_is_probed_not_retransmitted()
    {
        using var p = new SackPeer(Algorithms.Configure("rack-tlp", "newreno"));
        const int Buffer = 10 * 1448;
        p.Open(Rtt, window: Buffer);
        var sending = p.SendData(20);
        var flight = p.Drain();
        Assert.Equal(10, flight.Count);
        p.Peer.Advance(Rtt);

        // The receiver takes all ten, but its application reads nothing: every ACK shrinks the window by what it
        // acknowledges, the last one closes it while ten segments still wait at the sender. No probe timer, no
        // RTO: only zero-window probes (RFC 9293 §3.8.6.1).
        foreach (var s in flight)
        {
            p.Receive(s);
            p.Window = (ushort)(Buffer - (p.ReceiveNext - p.S));
            p.Ack();
            Assert.Empty(p.Drain());
        }

        Assert.Equal(0, p.Window);
        var closed = p.Peer.Now;
        var rto = p.Info.Rto;
        var probe = p.Peer.Next(TimeSpan.FromSeconds(5));
        output.WriteLine($"closed at {closed}, probe {probe}, rto {rto}");
        Assert.Equal(0, probe.Length);
        Assert.Equal(p.ReceiveNext - 1, probe.Seq);
        Assert.Equal(rto, probe.At - closed);
        p.Ack();
        p.Peer.Next(TimeSpan.FromSeconds(5));
        var info = p.Info;
        Assert.Equal(2, info.ZeroWindowProbes);
        Assert.Equal(0, info.Timeouts);
        Assert.Equal(0, info.TailLossProbes);
        Assert.Equal(0, info.RetransmittedSegments);

        // The window opens: the waiting data flows and completes.
        p.Window = 65535;
        p.Ack();
        p.Play(Rtt, static (_, _) => false, () => sending.IsCompleted);
        Assert.Equal(0, p.Info.Timeouts);
        Assert.Equal(0, p.Info.RetransmittedSegments);
    }
}
