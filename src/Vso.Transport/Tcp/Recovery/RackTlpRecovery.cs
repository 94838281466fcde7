namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// SACK-based loss recovery, the default when SACK is negotiated (see <see cref="TcpSettings.DefaultLossRecovery"/>;
/// it needs SACK, RFC 8985 §4). It owns the recovery episode and composes: RACK loss detection
/// (<see cref="RackLossDetector"/>, RFC 8985 §6), tail loss probes (<see cref="TailLossProbe"/>, §7), repair in the
/// spirit of RFC 6675 (<see cref="SackRepair"/>), and proportional rate reduction of the window during recovery
/// (<see cref="ProportionalRateReduction"/>, RFC 6937). Here too: undo of spurious reductions proved by D-SACK
/// (RFC 2883, RFC 3708) or Eifel (RFC 3522).
/// </summary>
internal sealed class RackTlpRecovery : ILossRecovery
{
    private IScoreboardSender _sender = null!;
    private RackLossDetector _rack = null!;
    private TailLossProbe _probe = null!;
    private SackRepair _repair = null!;
    private ProportionalRateReduction _prr = null!;

    /// <summary>RACK has seen the peer's ACKs reorder segments (TCP info; false before the handshake settled).</summary>
    internal bool ReorderingSeen => _rack?.ReorderingSeen ?? false;

    // Recovery episode: the phase and the recovery point (snd.max when it started) that ends it.
    private RecoveryPhase _phase;
    private uint _recoveryPoint;

    // Undo (RFC 3708 accounting): retransmissions of the last episode not yet proven spurious by D-SACK; -1 when
    // no undo is possible (none started, after a timeout, or already undone).
    private int _undoRetransmissions = -1;

    /// <summary>
    /// Send a probe also in fast recovery when no ACK arrives for a probe timeout (see <see cref="TailLossProbe"/>).
    /// Default true; false keeps RFC 8985 §7.2 to the letter (no probe in recovery: a silent recovery waits for the RTO).
    /// </summary>
    public bool ProbeInRecovery { get; init; } = true;

    public string Name => "rack-tlp";

    public bool InRecovery => _phase != RecoveryPhase.Open;

    /// <summary>The reordering window RACK applies now, in microseconds (for tests and TCP info).</summary>
    public long ReorderWindow => _rack.ReorderWindow(InRecovery);

    public long TimerDeadline
    {
        get
        {
            var reorderDeadline = _rack.ReorderDeadline;
            var probeDeadline = _probe.ProbeDeadline;
            if (reorderDeadline == 0)
            {
                return probeDeadline;
            }

            return probeDeadline == 0 ? reorderDeadline : Math.Min(reorderDeadline, probeDeadline);
        }
    }

    /// <summary>In fast recovery PRR decides (RFC 6937); otherwise the window less the pipe (RFC 6675 §5).</summary>
    public long SendQuota => _phase == RecoveryPhase.Fast ? _prr.SendQuota : _repair.WindowLessPipe;

    public void Attach(ILossRecoverySender sender)
    {
        // RACK reads and marks the engine's own scoreboard: only the sender the engine hands to Attach has one.
        _sender = sender as IScoreboardSender ?? throw new ArgumentException(
            "RACK-TLP needs the connection's own sender, the one the engine passes to ILossRecovery.Attach; an algorithm that wraps it must pass that instance on.", nameof(sender));
        _rack = new RackLossDetector(_sender);
        _probe = new TailLossProbe(_sender, ProbeInRecovery);
        _repair = new SackRepair(_sender);
        _prr = new ProportionalRateReduction(_sender);
    }

    /// <summary>
    /// A pooled connection chose RACK-TLP again (TcpSender's spare): the parts, attached to that same sender, and the
    /// episode start over as a new connection's would (issue 12 item 4: nothing built per connection).
    /// </summary>
    internal void Reuse()
    {
        _rack.Reset();
        _probe.Reset();
        _repair.Reset();
        _prr.Reset();
        _phase = default;
        _recoveryPoint = 0;
        _undoRetransmissions = -1;
    }

    public void OnAck(in AckEvent ack)
    {
        var now = _sender.NowMicroseconds;
        UndoIfSpurious(ack);
        _rack.OnAck(ack, now);
        _probe.OnAck(ack, _phase, now);

        var marked = DetectLosses(now);

        if (_phase != RecoveryPhase.Open && SequenceNumber.Ge(ack.Acknowledgment, _recoveryPoint))
        {
            EndRecovery(now);
        }
        else if (_phase == RecoveryPhase.Open && marked)
        {
            StartRecovery(now);
        }

        if (_phase == RecoveryPhase.Fast)
        {
            _prr.OnAck(ack.BytesAcknowledged + ack.BytesSacked);
        }

        _probe.Schedule(now, _phase);
    }

    /// <summary>Retransmits lost segments while the quota allows; new data follows within what is left of it.</summary>
    public void RepairLosses()
    {
        while (SendQuota > 0 && _repair.RetransmitNextLost())
        {
        }
    }

    public void OnTransmitted(uint sequence, int length, bool isRetransmission)
    {
        if (_phase == RecoveryPhase.Fast)
        {
            _prr.OnSent(length);
        }

        if (isRetransmission && _undoRetransmissions >= 0)
        {
            _undoRetransmissions++;
        }

        if (!isRetransmission)
        {
            _probe.Schedule(_sender.NowMicroseconds, _phase);
        }
    }

    /// <summary>
    /// The MSS fell (RFC 1191 path MTU): everything in flight is lost and is resent from SND.UNA at the new size,
    /// like after a timeout (RFC 6675 §5.1) but without a congestion response: the path, not congestion, dropped it.
    /// </summary>
    internal void OnSegmentSizeReduced()
    {
        _sender.Scoreboard.MarkAllLost();
        _repair.RestartAtUnacknowledged();
    }

    public void OnRetransmissionTimeout()
    {
        var sender = _sender;

        // RFC 6675 §5.1 / RFC 8985 §6.3: after a timeout every segment not SACKed is presumed lost and is
        // resent in slow start from the loss window; no rewind of snd.nxt, the scoreboard drives it.
        sender.CongestionControl.OnRetransmissionTimeout(sender.Scoreboard.Pipe(sender.SendUnacknowledged, sender.SendMax), sender.NowMicroseconds);
        sender.Scoreboard.MarkAllLost();
        _repair.RestartAtUnacknowledged();
        _phase = RecoveryPhase.AfterTimeout;
        _recoveryPoint = sender.SendMax;
        _undoRetransmissions = -1;
        _probe.Cancel();
        _rack.CancelReorderTimer();
    }

    public void OnTimer(long nowMicroseconds)
    {
        if (_rack.OnReorderTimer(nowMicroseconds, InRecovery, out var firstLost))
        {
            _repair.OnLost(firstLost);
            if (_phase == RecoveryPhase.Open)
            {
                StartRecovery(nowMicroseconds);
                _prr.OnAck(0);
            }
        }

        _probe.OnTimer(nowMicroseconds, _phase);
    }

    /// <summary>RFC 4015 response to a timeout Eifel proved spurious (RFC 3522): nothing was lost; forget the loss marks and restore the window.</summary>
    public void OnSpuriousTimeout()
    {
        _sender.Scoreboard.ClearLost();
        _phase = RecoveryPhase.Open;
        _sender.CongestionControl.OnSpuriousCongestionEvent();
        _sender.Report(RecoveryEvent.Undo);
    }

    /// <summary>RACK detection (RFC 8985 §6.2 step 5); what it marks lost is where repair resumes.</summary>
    private bool DetectLosses(long now)
    {
        if (!_rack.DetectLosses(now, InRecovery, out var firstLost))
        {
            return false;
        }

        _repair.OnLost(firstLost);
        return true;
    }

    private void StartRecovery(long now)
    {
        var sender = _sender;
        _phase = RecoveryPhase.Fast;
        _recoveryPoint = sender.SendMax;

        // RFC 6937 §3: RecoverFS is the flight when recovery starts.
        var recoverFs = Math.Max(1, (long)(uint)(sender.SendMax - sender.SendUnacknowledged));
        _prr.Start(recoverFs);
        _undoRetransmissions = 0;

        // RFC 6675 §5 step (4.2) / RFC 5681 eqn. (4): ssthresh from FlightSize (SND.MAX - SND.UNA), not from pipe:
        // pipe leaves out what is SACKed or marked lost, so halving it cut the window far below half.
        sender.CongestionControl.OnCongestionEvent(recoverFs, now);
        sender.Report(RecoveryEvent.FastRecovery);
    }

    private void EndRecovery(long now)
    {
        if (_phase == RecoveryPhase.Fast)
        {
            _prr.End(now);
        }

        _phase = RecoveryPhase.Open;
        _rack.OnRecoveryEnd();
    }

    /// <summary>D-SACK undo (RFC 3708): when every retransmission of the last episode arrived twice, its reduction was spurious.</summary>
    private void UndoIfSpurious(in AckEvent ack)
    {
        if (ack.DsackBytes == 0 || !ack.DsackCoversRetransmission)
        {
            return;
        }

        _sender.Report(RecoveryEvent.SpuriousRetransmission);
        if (_undoRetransmissions > 0 && --_undoRetransmissions == 0)
        {
            _undoRetransmissions = -1;
            _sender.CongestionControl.OnSpuriousCongestionEvent();
            _sender.Report(RecoveryEvent.Undo);
            if (_phase == RecoveryPhase.Fast)
            {
                _phase = RecoveryPhase.Open;
            }
        }
    }
}
