namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Fast retransmit and fast recovery (RFC 5681 §3.2) with NewReno's partial-ACK handling (RFC 6582 §3.2),
/// falling back to the timeout of <see cref="RtoRecovery"/>. The default when the peer has no SACK (see
/// <see cref="TcpSettings.DefaultLossRecovery"/>). Its retransmissions go out on the ACK that calls for them,
/// so <see cref="RtoRecovery.RepairLosses"/> has nothing left to do.
/// </summary>
internal sealed class NewRenoRecovery : RtoRecovery
{
    private const int DuplicateThreshold = 3;
    private int _duplicateAcks;
    private uint _recover;
    private bool _inRecovery;
    private long _inflation;
    private bool _started;

    public override string Name => "newreno";

    public override bool InRecovery => _inRecovery;

    /// <summary>The congestion window inflated in recovery (RFC 6582 §3.2) or by limited transmit (RFC 3042).</summary>
    public override long SendQuota
    {
        get
        {
            var limitedTransmit = !_inRecovery && _duplicateAcks is 1 or 2 ? _duplicateAcks * (long)Sender.MaxSegmentSize : 0;
            return Sender.CongestionControl.CongestionWindow + _inflation + limitedTransmit - Sender.BytesInFlight;
        }
    }

    public override void OnAck(in AckEvent ack)
    {
        var sender = Sender;
        if (!_started)
        {
            // RFC 6582 §3.2 step 1: recover starts at the initial send sequence (everything before snd.una).
            _started = true;
            _recover = sender.SendUnacknowledged - (uint)ack.BytesAcknowledged - 1;
        }

        if (ack.IsDuplicate)
        {
            _duplicateAcks++;
            if (_inRecovery)
            {
                // RFC 6582 §3.2 step 4: each further duplicate means a segment left the network.
                _inflation += sender.MaxSegmentSize;
                return;
            }

            // RFC 6582 §3.2 step 2: only enter recovery if this loss is past the last recovery point.
            if (_duplicateAcks == DuplicateThreshold && SequenceNumber.Gt(ack.Acknowledgment - 1, _recover - 1))
            {
                _inRecovery = true;
                _recover = sender.SendMax;
                sender.CongestionControl.OnCongestionEvent(sender.BytesInFlight, sender.NowMicroseconds);
                sender.Report(RecoveryEvent.FastRecovery);
                _inflation = DuplicateThreshold * (long)sender.MaxSegmentSize;
                sender.Retransmit(sender.SendUnacknowledged, sender.MaxSegmentSize);
            }

            return;
        }

        if (ack.BytesAcknowledged == 0)
        {
            return;
        }

        _duplicateAcks = 0;
        if (!_inRecovery)
        {
            return;
        }

        if (SequenceNumber.Ge(ack.Acknowledgment, _recover))
        {
            // Step 3 (full acknowledgment): leave recovery and deflate.
            _inRecovery = false;
            _inflation = 0;
            sender.CongestionControl.OnRecoveryEnd(sender.BytesInFlight, sender.NowMicroseconds);
            return;
        }

        // Step 3 (partial acknowledgment): the next hole is lost too; resend it, deflate by what was acknowledged.
        sender.Retransmit(sender.SendUnacknowledged, sender.MaxSegmentSize);
        _inflation = Math.Max(0, _inflation - ack.BytesAcknowledged + sender.MaxSegmentSize);
    }

    public override void OnRetransmissionTimeout()
    {
        // RFC 6582 §3.2 step 5 note: after a timeout, recover marks the highest sequence sent.
        _recover = Sender.SendMax;
        _inRecovery = false;
        _inflation = 0;
        _duplicateAcks = 0;
        base.OnRetransmissionTimeout();
    }
}
