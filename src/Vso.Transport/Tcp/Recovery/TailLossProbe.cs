namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Tail loss probes (RFC 8985 §7): when a flight meets silence, send one segment so that its ACK reveals the
/// losses at the tail to RACK, instead of waiting for the retransmission timeout. Beyond the RFC, also in fast
/// recovery and again when a probe meets silence (see <see cref="Schedule"/>). The probe timer is this class's;
/// the retransmission timer stays the engine's, and the first probe of a silence restarts it (§7.3).
/// </summary>
internal sealed class TailLossProbe(IScoreboardSender sender, bool probeInRecovery)
{
    private const long WorstCaseDelayedAck = 200_000; // RFC 8985 §7.2 WCDelAckT
    private const int MaxProbesPerSilence = 3;         // see Schedule

    // The episode of the last probe (§7.4): its TLP.end_seq and whether it resent old data.
    private bool _probeOutstanding;
    private uint _probeEndSeq;
    private bool _probeWasRetransmission;

    // Probes sent since the last ACK, and the RTO deadline the first of them fixed (§7.3).
    private int _probesSinceAck;
    private long _probeRtoDeadline;

    /// <summary>When the probe timeout (PTO) expires, or 0.</summary>
    public long ProbeDeadline { get; private set; }

    /// <summary>A reused connection (same sender): no probe outstanding or armed.</summary>
    public void Reset()
    {
        _probeOutstanding = false;
        _probeEndSeq = 0;
        _probeWasRetransmission = false;
        _probesSinceAck = 0;
        _probeRtoDeadline = 0;
        ProbeDeadline = 0;
    }

    /// <summary>
    /// Every ACK: the silence is over; and §7.4.2 (TLP_process_ack): the episode of a tail loss probe ends when an
    /// ACK reaches TLP.end_seq and
    ///  - the probe was new data, or a D-SACK says the retransmitted probe was a duplicate: no loss;
    ///  - the ACK goes beyond TLP.end_seq with no D-SACK: the probe repaired a loss, respond once;
    ///  - a pure duplicate ACK without SACK: both arrived, no loss.
    /// An ACK of exactly TLP.end_seq proves nothing yet: the receiver acknowledges the original first and its
    /// D-SACK for the probe follows (a receiver slower than the probe timeout does exactly this), so wait.
    /// </summary>
    public void OnAck(in AckEvent ack, RecoveryPhase phase, long now)
    {
        _probesSinceAck = 0;
        if (!_probeOutstanding || !SequenceNumber.Ge(ack.Acknowledgment, _probeEndSeq))
        {
            return;
        }

        if (!_probeWasRetransmission || ack.DsackBytes > 0)
        {
            _probeOutstanding = false;
        }
        else if (SequenceNumber.Gt(ack.Acknowledgment, _probeEndSeq))
        {
            _probeOutstanding = false;
            if (phase == RecoveryPhase.Open)
            {
                sender.CongestionControl.OnCongestionEvent(sender.BytesInFlight, now);
                sender.CongestionControl.OnRecoveryEnd(sender.BytesInFlight, now);
            }
        }
        else if (ack.BytesAcknowledged == 0 && ack.BytesSacked == 0 && ack.DsackBytes == 0)
        {
            _probeOutstanding = false;
        }
    }

    /// <summary>The retransmission timeout took over: no probe episode, no probe pending.</summary>
    public void Cancel()
    {
        _probeOutstanding = false;
        _probesSinceAck = 0;
        ProbeDeadline = 0;
    }

    /// <summary>
    /// RFC 8985 §7.2: arm the probe timeout while data is outstanding outside recovery; and, beyond the RFC, in fast
    /// recovery too (see <see cref="SendRecoveryProbe"/>), and again, with the timeout doubled, when a probe met
    /// silence (at most <see cref="MaxProbesPerSilence"/> probes until an ACK arrives). RFC 8985 §7.3 sends one probe
    /// per episode and leaves its loss to the RTO. But the probe is answered by a single ACK, and a receiver delays the
    /// ACK of a lone in-order segment (Linux: 40 ms): on veth at 5% loss each way, client-side NFLOG traces showed nearly
    /// every remaining RTO to be a flight whose ACK was dropped, a probe whose delayed ACK 40 ms later was dropped too,
    /// and then 160 ms of silence. A second probe two PTOs later leaves two segments unacknowledged at the receiver,
    /// which it acknowledges at once (RFC 5681 §4.2; a duplicate, the same), so the episode ends in a few PTOs instead
    /// of a delayed ACK or an RTO. QUIC backs its probe timeout off and probes again in the same way (RFC 9002 §6.2.1,
    /// §6.2.4). The RTO stays armed behind the probes and still fires if they all meet silence.
    /// </summary>
    public void Schedule(long now, RecoveryPhase phase)
    {
        if (phase == RecoveryPhase.AfterTimeout || sender.Scoreboard.Count == 0 || (phase == RecoveryPhase.Fast && !probeInRecovery)
            || _probesSinceAck >= MaxProbesPerSilence || (_probeOutstanding && _probesSinceAck == 0))
        {
            // (An episode still outstanding after an ACK: the path answers, RACK takes over, as §7.4 says.)
            ProbeDeadline = 0;
            return;
        }

        // §7.2: PTO = 2 SRTT, 1 s before the first RTT sample; never below the engine's 1 ms timer tick.
        var timeout = sender.HasRttSample ? Math.Max(2 * sender.SmoothedRttMicroseconds, 1_000) : 1_000_000;

        // §7.2: WCDelAckT only when a single segment is in flight. Called from OnTransmitted before snd.max covers
        // the segment just sent, so count up to the scoreboard's last record, or every first flight of two
        // segments would wait the extra 200 ms and lose the race against the RTO. Not in recovery: the receiver holds
        // out-of-order data then and acknowledges at once (RFC 5681 §4.2), also the segment that fills the hole.
        var last = sender.Scoreboard[sender.Scoreboard.Count - 1];
        var high = SequenceNumber.Max(sender.SendMax, last.Start + (uint)last.Length);
        if (phase == RecoveryPhase.Open && _probesSinceAck == 0 && sender.Scoreboard.Pipe(sender.SendUnacknowledged, high) <= sender.MaxSegmentSize)
        {
            timeout += WorstCaseDelayedAck;
        }

        // The probe must come before the retransmission timeout, or it is pointless.
        timeout = Math.Min(timeout, sender.RtoMicroseconds);
        if (_probesSinceAck > 0)
        {
            // Backoff for a probe that met silence (RFC 9002 §6.2.1: the PTO doubles with each probe). These further
            // probes leave the RTO where the first probe put it (§7.3), so they only fill the time before it: on a dead
            // path the RTO comes no later than with one probe.
            timeout <<= _probesSinceAck;
            if (now + timeout >= _probeRtoDeadline)
            {
                ProbeDeadline = 0;
                return;
            }
        }

        ProbeDeadline = now + timeout;
    }

    /// <summary>The probe timer: sends a probe when it is due.</summary>
    public void OnTimer(long now, RecoveryPhase phase)
    {
        if (ProbeDeadline != 0 && now >= ProbeDeadline)
        {
            ProbeDeadline = 0;
            SendProbe(phase);
        }
    }

    /// <summary>RFC 8985 §7.3: new data if any may go, else the last segment again.</summary>
    private void SendProbe(RecoveryPhase phase)
    {
        if (sender.Scoreboard.Count == 0 || phase == RecoveryPhase.AfterTimeout)
        {
            return;
        }

        if (phase == RecoveryPhase.Fast)
        {
            SendRecoveryProbe(phase);
            return;
        }

        // Counted before it is sent: sending calls back into OnTransmitted, which arms the next probe (backed off).
        if (!_probeOutstanding)
        {
            _probeWasRetransmission = false;
        }

        _probeOutstanding = true;
        NoteProbe();
        if (sender.SendNewSegment() == 0)
        {
            var last = sender.Scoreboard[sender.Scoreboard.Count - 1];
            sender.Retransmit(last.Start, last.Length);
            _probeWasRetransmission = true;
            Schedule(sender.NowMicroseconds, phase);
        }

        _probeEndSeq = sender.SendMax;
        ProbeSent();
    }

    /// <summary>
    /// A probe in fast recovery, when no ACK came for a PTO. RFC 8985 §7.2 arms TLP only outside recovery and leaves a
    /// silent recovery to the RTO, trusting RACK to find lost retransmissions. RACK can only do so when something sent
    /// after the retransmission is SACKed; with the two- or three-segment flights of a short lossy path the end of an
    /// episode is often the retransmission plus one segment, answered by a single ACK, and losing that ACK (or both
    /// segments) left the sender silent for a 200 ms RTO, about one episode in twenty at 5% loss each way (veth,
    /// kernel receiver). QUIC arms its probe timeout in recovery as well (RFC 9002 §6.2), and so does this: one probe
    /// per PTO of silence (backed off, see <see cref="Schedule"/>), new data if the peer's window allows, else
    /// the highest segment not yet SACKed. Its ACK either acknowledges everything (only the ACK was lost) or SACKs the probe, sent after the
    /// retransmission, so that RACK marks the retransmission lost (§6.2) and PRR resends it.
    /// </summary>
    private void SendRecoveryProbe(RecoveryPhase phase)
    {
        NoteProbe();
        if (sender.SendNewSegment() == 0)
        {
            var scoreboard = sender.Scoreboard;
            for (var i = scoreboard.Count - 1; i >= 0; i--)
            {
                ref readonly var r = ref scoreboard[i];
                if (!r.IsSacked)
                {
                    sender.Retransmit(r.Start, r.Length);
                    break;
                }
            }

            Schedule(sender.NowMicroseconds, phase);
        }

        ProbeSent();
    }

    /// <summary>Counts a probe before it is sent (sending arms the next one); the first of a silence fixes the RTO deadline (§7.3).</summary>
    private void NoteProbe()
    {
        if (++_probesSinceAck == 1)
        {
            _probeRtoDeadline = sender.NowMicroseconds + sender.RtoMicroseconds;
        }
    }

    /// <summary>
    /// RFC 8985 §7.3: after a loss probe the sender restarts the RTO, not the PTO; a repeated probe leaves the RTO where
    /// the first probe of the silence put it (<see cref="NoteProbe"/> fixed that deadline for the backoff to stay under).
    /// </summary>
    private void ProbeSent()
    {
        if (_probesSinceAck == 1)
        {
            sender.RestartRetransmitTimer();
        }

        sender.Report(RecoveryEvent.TailLossProbe);
    }
}
