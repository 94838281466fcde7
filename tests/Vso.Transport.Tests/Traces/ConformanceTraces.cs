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
}
