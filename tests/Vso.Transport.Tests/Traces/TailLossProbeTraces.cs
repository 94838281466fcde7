using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// RFC 8985 §7.4.2: the end of a tail loss probe episode. A receiver that acknowledges the original before it
/// sees the probe answers ACK = TLP.end_seq first and its D-SACK for the probe afterwards: that proves nothing was
/// lost, and the congestion window must stay. (Found under wrk: a loaded client made every probe look like a loss
/// and collapsed cwnd to 2 MSS for app-limited responses, p99 latency 0.6-0.9 s.)
/// </summary>
public sealed class TailLossProbeTraces
{
    private const uint R = 1001;

    /// <summary>One exchange with a 10 ms RTT, so that srtt (and the probe timeout, 2 srtt) is set. Returns snd.nxt.</summary>
    private static uint Warm(RawPeer peer, Api.VsoConnection connection, uint s)
    {
        var warm = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Expect(PshAck, seq: s, ack: R);
        peer.Advance(TimeSpan.FromMilliseconds(10));
        peer.Send(Ack, seq: R, ack: s + 100);
        peer.Await(warm, TimeSpan.FromMilliseconds(1));
        return s + 100;
    }

    [Fact]
    public void Ack_of_exactly_the_probe_end_then_DSACK_is_no_loss()
    {
        using var peer = new RawPeer(settings => settings.Nagle = false);
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(sackPermitted: true));
        var s = Warm(peer, connection, iss + 1);
        var sending = connection.SendAsync(TraceAssert.Bytes(2000));
        var first = peer.Expect(Ack, seq: s, ack: R);
        var last = peer.Expect(PshAck, seq: s + (uint)first.Length, ack: R);
        var end = s + 2000;

        // No ACK: the probe retransmits the last segment (no new data to send).
        var probe = peer.Expect(PshAck, seq: last.Seq, ack: R, within: TimeSpan.FromSeconds(2)); // resent as it was sent, PSH kept (RFC 1122 §4.2.2.2)
        Assert.Equal(last.Length, probe.Length);
        Assert.Equal(1, connection.GetInfo().TailLossProbes);
        var before = connection.GetInfo();

        // The originals arrived: ACK = TLP.end_seq without D-SACK. Not yet a loss.
        peer.Send(Ack, seq: R, ack: end);
        peer.Await(sending, TimeSpan.FromMilliseconds(1));
        Assert.Equal(before.SlowStartThreshold, connection.GetInfo().SlowStartThreshold);

        // Then the probe arrives as a duplicate: D-SACK (RFC 2883) for it. Spurious: no reduction, ever.
        var dsack = TcpOptions.None;
        dsack.SetSackBlock(0, new SackBlock(probe.Seq, probe.Seq + (uint)probe.Length));
        peer.Send(Ack, seq: R, ack: end, options: dsack);
        var more = connection.SendAsync(TraceAssert.Bytes(100));
        var next = peer.Expect(PshAck, seq: end, ack: R, within: TimeSpan.FromMilliseconds(1));
        peer.Send(Ack, seq: R, ack: end + (uint)next.Length);
        peer.Await(more, TimeSpan.FromMilliseconds(1));
        var after = connection.GetInfo();
        Assert.Equal(before.SlowStartThreshold, after.SlowStartThreshold);
        Assert.Equal(before.CongestionWindow, after.CongestionWindow);
    }

    [Fact]
    public void Ack_beyond_the_probe_end_without_DSACK_is_a_repaired_loss()
    {
        using var peer = new RawPeer(settings => settings.Nagle = false);
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(sackPermitted: true));
        var s = Warm(peer, connection, iss + 1);
        var sending = connection.SendAsync(TraceAssert.Bytes(2000));
        var first = peer.Expect(Ack, seq: s, ack: R);
        var last = peer.Expect(PshAck, seq: s + (uint)first.Length, ack: R);
        var end = s + 2000;
        peer.Expect(PshAck, seq: last.Seq, ack: R, within: TimeSpan.FromSeconds(2));
        var before = connection.GetInfo();

        // The last original was lost, the probe repaired it: ACK = end_seq, then new data is acknowledged
        // beyond it without any D-SACK. RFC 8985 §7.4.2: respond to the loss once.
        peer.Send(Ack, seq: R, ack: end);
        peer.Await(sending, TimeSpan.FromMilliseconds(1));
        var more = connection.SendAsync(TraceAssert.Bytes(100));
        var next = peer.Expect(PshAck, seq: end, ack: R, within: TimeSpan.FromMilliseconds(1));
        peer.Send(Ack, seq: R, ack: end + (uint)next.Length);
        peer.Await(more, TimeSpan.FromMilliseconds(1));
        Assert.NotEqual(before.SlowStartThreshold, connection.GetInfo().SlowStartThreshold);
    }
}
