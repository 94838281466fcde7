using Vso.Transport.Tcp;
using Vso.Transport.Tests.Recovery;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// Bugs an independent conformance run found (issue 11, items 3 to 7), each as the trace that showed it: where the
/// stack was wrong by the RFC, not where the RFCs leave the choice open.
/// </summary>
public sealed class ConformanceTraces
{
    private const uint R = 1001;

    [Fact]
    public void Rfc9293_3_8_6_3_one_segment_of_two_full_sized_segments_is_ACKed_at_once()
    {
        // RFC 9293 §3.8.6.3 (RFC 5681 §4.2): an ACK for at least every 2*RMSS bytes of new data. A segment that carries
        // two full-sized segments (coalesced by a receive offload on the way) must not wait for the delayed-ACK timer.
        using var peer = new RawPeer(s => s.DelayedAck = TimeSpan.FromMilliseconds(40), wireMtu: 9000);
        var (_, iss) = peer.OpenPassive();
        peer.Send(PshAck, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(2 * 1460));
        peer.Expect(Ack, seq: iss + 1, ack: R + 2920, within: TimeSpan.Zero);
        peer.ExpectNothing(TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void Rfc9293_3_8_6_3_the_ACK_every_two_full_sized_segments_counts_bytes()
    {
        // 1.5 segments wait for the delay (less than 2*RMSS); the half segment after them makes 2*RMSS: an ACK at once.
        using var peer = new RawPeer(s => s.DelayedAck = TimeSpan.FromMilliseconds(40), wireMtu: 9000);
        var (_, iss) = peer.OpenPassive();
        peer.Send(Ack, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(1460 + 730));
        peer.ExpectNothing(TimeSpan.FromMilliseconds(10));
        peer.Send(PshAck, seq: R + 2190, ack: iss + 1, payload: TraceAssert.Bytes(730));
        peer.Expect(Ack, seq: iss + 1, ack: R + 2920, within: TimeSpan.Zero);
        peer.ExpectNothing(TimeSpan.FromSeconds(1));
    }

    // ---- Item 7: PSH on retransmission (RFC 1122 §4.2.2.2) ----

    [Fact]
    public void Rfc1122_4_2_2_2_a_timeout_retransmission_keeps_PSH()
    {
        // PSH marks the end of what the application had queued; the segment that carried it carries it again when it is
        // resent (Linux keeps the flags with the segment).
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        var again = peer.Expect(PshAck, seq: s, within: TimeSpan.FromSeconds(2));
        Assert.Equal(100, again.Length);
    }

    [Fact]
    public void Rfc1122_4_2_2_2_a_full_segment_from_the_middle_of_a_write_is_retransmitted_without_PSH()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(1460 + 100));
        Assert.Equal(1460, peer.Expect(Ack, seq: s, within: TimeSpan.Zero).Length);
        Assert.Equal(100, peer.Expect(PshAck, seq: s + 1460, within: TimeSpan.Zero).Length);
        Assert.Equal(1460, peer.Expect(Ack, seq: s, within: TimeSpan.FromSeconds(2)).Length);
        peer.Send(Ack, seq: R, ack: s + 1460);
        Assert.Equal(100, peer.Expect(PshAck, seq: s + 1460, within: TimeSpan.FromSeconds(2)).Length);
    }

    [Fact]
    public void Rfc1122_4_2_2_2_a_fast_retransmission_that_covers_a_pushed_write_carries_PSH()
    {
        // NewReno (no SACK): the third duplicate ACK resends a full segment from SND.UNA, which holds the 100 bytes of
        // the first write (sent with PSH) and the start of the second.
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        _ = connection.SendAsync(TraceAssert.Bytes(3 * 1460));
        peer.Expect(Ack, seq: s + 100, within: TimeSpan.Zero);
        peer.Expect(Ack, seq: s + 1560, within: TimeSpan.Zero);
        peer.Expect(PshAck, seq: s + 3020, within: TimeSpan.Zero);
        for (var i = 0; i < 3; i++)
        {
            peer.Send(Ack, seq: R, ack: s);
        }

        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
    }

    [Fact]
    public void Rfc1122_4_2_2_2_a_RACK_retransmission_keeps_PSH()
    {
        using var p = new SackPeer(s => s.Nagle = false);
        p.Open(TimeSpan.FromMilliseconds(50));
        _ = p.Connection.SendAsync(TraceAssert.Bytes(100));
        var flight = p.Drain();
        _ = p.Connection.SendAsync(TraceAssert.Bytes(3 * p.Mss));
        flight.AddRange(p.Drain());
        Assert.Equal([PshAck, Ack, Ack, PshAck], flight.Select(f => f.Flags));
        p.Peer.Advance(TimeSpan.FromMilliseconds(50));
        foreach (var segment in flight[1..])
        {
            p.ReceiveAndAck(segment);
        }

        // Three segments SACKed above it: RACK declares the first lost (RFC 8985 §6.2) and resends it as it was.
        var again = p.Peer.Expect(PshAck, seq: p.S, within: TimeSpan.FromMilliseconds(100));
        Assert.Equal(100, again.Length);
        Assert.Equal(1, p.Info.RackLosses);
    }

    [Fact]
    public void Rfc1122_4_2_2_2_a_tail_loss_probe_keeps_PSH()
    {
        using var p = new SackPeer();
        p.Open(TimeSpan.FromMilliseconds(50));
        _ = p.Connection.SendAsync(TraceAssert.Bytes((2 * p.Mss) + 100));
        var flight = p.Drain();
        Assert.Equal([Ack, Ack, PshAck], flight.Select(f => f.Flags));
        p.Peer.Advance(TimeSpan.FromMilliseconds(50));
        p.ReceiveAndAck(flight[0]);

        // No new data to probe with: the probe resends the last segment (RFC 8985 §7.3), the one that carried PSH.
        var probe = p.Peer.Expect(PshAck, seq: flight[2].Seq, within: TimeSpan.FromMilliseconds(150));
        Assert.Equal(100, probe.Length);
        Assert.Equal(1, p.Info.TailLossProbes);
    }

    // ---- Item 6: a FIN above a hole (RFC 5681 §4.2) ----

    [Fact]
    public void Rfc5681_4_2_a_zero_length_FIN_above_a_hole_gets_an_immediate_duplicate_ACK()
    {
        using var peer = new RawPeer(s => s.DelayedAck = TimeSpan.FromMilliseconds(40));
        var (_, iss) = peer.OpenPassive();

        // The FIN is out of order (100 bytes before it are missing): an immediate ACK of RCV.NXT tells the sender.
        peer.Send(FinAck, seq: R + 100, ack: iss + 1);
        peer.Expect(Ack, seq: iss + 1, ack: R, within: TimeSpan.Zero);
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));
        Assert.Equal(TcpState.Established, peer.State);

        // The hole fills: the FIN is processed and acknowledged with the data.
        peer.Send(PshAck, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(100));
        peer.Expect(Ack, seq: iss + 1, ack: R + 101, within: TimeSpan.Zero);
        Assert.Equal(TcpState.CloseWait, peer.State);
    }

    // ---- Item 5: a handshake behind ARP, and a RST behind ARP ----

    private static readonly TimeSpan HandshakeRtt = TimeSpan.FromMilliseconds(100);

    [Fact]
    public void Rfc6298_2_2_a_SYN_that_waited_for_ARP_is_timed_from_when_it_left()
    {
        // The gateway is not resolved: the SYN waits for ARP, then leaves; the SYN-ACK comes 100 ms after it. The first
        // RTT sample is those 100 ms (RFC 6298 §2.2: SRTT = R, RTTVAR = R/2, RTO = R + 4 * R/2 = 3R), not the initial 1 s.
        using var peer = new RawPeer(asGateway: true);
        var connecting = peer.Stack.ConnectAsync(peer.Remote, peer.Port);
        var syn = peer.Expect(Syn, ack: 0, within: TimeSpan.Zero);
        peer.StackPort = syn.SourcePort;
        peer.Advance(HandshakeRtt);
        peer.Send(SynAck, seq: 5000, ack: syn.Seq + 1, options: RawPeer.SynOptions(sackPermitted: true));
        peer.Expect(Ack, seq: syn.Seq + 1, ack: 5001, within: TimeSpan.Zero);
        var info = peer.Await(connecting, TimeSpan.Zero).GetInfo();
        Assert.Equal(HandshakeRtt, info.SmoothedRtt);
        Assert.Equal(HandshakeRtt * 3, info.Rto);
        Assert.Equal(HandshakeRtt.Ticks / 10, peer.Connection!.Sender.MinRttMicroseconds); // RACK's min_RTT (RFC 8985 §6.2)
    }

    [Fact]
    public void Rfc6298_2_2_a_SYN_ACK_that_waited_for_ARP_is_timed_from_when_it_left()
    {
        using var peer = new RawPeer(asGateway: true);
        using var listener = peer.Stack.Listen(peer.StackPort);
        var accepted = listener.AcceptAsync().AsTask();
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions(sackPermitted: true));
        var synAck = peer.Expect(SynAck, ack: 1001, within: TimeSpan.Zero);
        peer.Advance(HandshakeRtt);
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        var info = peer.Await(accepted, TimeSpan.Zero).GetInfo();
        Assert.Equal(HandshakeRtt, info.SmoothedRtt);
        Assert.Equal(HandshakeRtt * 3, info.Rto);
        Assert.Equal(HandshakeRtt.Ticks / 10, peer.Connection!.Sender.MinRttMicroseconds);
    }

    [Fact]
    public void Rfc9293_3_10_7_1_a_RST_to_a_peer_behind_an_unresolved_next_hop_waits_for_ARP()
    {
        // A segment to a closed port from behind the gateway, whose ARP entry the stack does not have yet: the RST is
        // queued behind the resolution like any segment (RFC 1122 §2.3.2.2 allows queuing), not dropped.
        using var peer = new RawPeer(asGateway: true);
        peer.Send(Ack, seq: 5000, ack: 7000);
        peer.Expect(Rst, seq: 7000, ack: 0, within: TimeSpan.Zero);
        peer.ExpectNothing(TimeSpan.FromSeconds(10));
        Assert.Equal(1, peer.Stack.Core.Tcp.ResetsSent);
    }

    [Fact]
    public void Rfc9293_3_10_5_an_abort_whose_next_hop_entry_expired_sends_its_RST_once_ARP_answers()
    {
        using var peer = new RawPeer(asGateway: true);
        var (connection, iss) = peer.OpenActive();

        // The gateway's ARP entry (60 s) expires with no refresh; the application aborts: RST after the new resolution.
        peer.Clock.AdvanceTo(peer.Clock.NowMicroseconds + 61_000_000);
        connection.Abort();
        peer.Expect(RstAck, seq: iss + 1, ack: 5001, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Closed, peer.State);
    }

    // ---- Item 4: RACK's reordering window when no reordering was seen (RFC 8985 §6.2 step 4) ----

    [Fact]
    public void Rfc8985_6_2_step_4_no_reordering_seen_and_three_segments_SACKed_retransmit_at_once_for_any_ISN()
    {
        // reo_wnd is 0 when no reordering was seen and DupThresh segments are SACKed: the hole goes with the third SACK,
        // not min_RTT/4 (25 ms here) later. The ISN (from the key and the port) and the spacing of the ACKs vary: every
        // one of them must behave the same, with ISNs in both halves of the sequence space.
        var rtt = TimeSpan.FromMilliseconds(100);
        var halves = new HashSet<bool>();
        for (var seed = 0; seed < 16; seed++)
        {
            using var p = new SackPeer(s => s.IsnKey = [(byte)seed, 11, 13, 17]);
            p.Peer.Port = (ushort)(40000 + (seed * 7));
            p.Open(rtt + TimeSpan.FromTicks(10 * seed * 37));
            var sending = p.SendData(5);
            var flight = p.Drain();
            Assert.Equal(5, flight.Count);
            halves.Add((int)p.Seg(2) < 0);
            p.Peer.Advance(rtt);
            for (var i = 1; i <= 3; i++)
            {
                if (i > 1)
                {
                    p.Peer.Advance(TimeSpan.FromTicks(10 * ((seed * 13 % 7) + 1)));
                }

                p.ReceiveAndAck(flight[i]);
                if (i < 3)
                {
                    Assert.Equal(0, p.Peer.Pending);
                }
            }

            var thirdSack = p.Peer.Now;
            var again = p.Peer.Next(TimeSpan.FromSeconds(1));
            Assert.True(again.Seq == p.Seg(0) && again.Length == p.Mss, $"seed {seed}: expected the retransmission of {p.Seg(0)}, got {again}");
            Assert.True(again.At == thirdSack, $"seed {seed} (S={p.S}): the retransmission waited {again.At - thirdSack} after the third SACK");
            Assert.Equal(0, p.Info.TailLossProbes);
        }

        Assert.Equal(2, halves.Count);
    }
}
