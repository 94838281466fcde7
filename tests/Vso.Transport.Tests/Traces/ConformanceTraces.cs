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
}
