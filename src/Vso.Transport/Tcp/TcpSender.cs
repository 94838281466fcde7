using Vso.Transport.Engine;
using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// The send side of one connection: the send sequence variables (RFC 9293 §3.3.1), the queue of the host's
/// descriptors, the scoreboard of what is in flight, the RTT estimator (RFC 6298), congestion control and loss
/// recovery. It processes the ACK field (§3.10.7.4 fifth check, SACK by RFC 2018/2883) and sends data: Nagle,
/// segmentation, retransmission, zero-window probes. It is the connection as loss recovery sees it
/// (<see cref="ILossRecoverySender"/>). Segments themselves are built by the connection (Emit).
/// </summary>
internal sealed partial class TcpSender : IScoreboardSender
{
    private readonly TcpConnection _connection;
    private readonly TcpLayer _layer;
    private readonly SendQueue _send = new();
    private readonly RttEstimator _rtt;
    private ICongestionControl _congestion;
    private ILossRecovery _recovery = PendingLossRecovery.Instance;
    private RackTlpRecovery? _spareRecovery; // a reused connection's RACK-TLP, attached to this sender, for its next handshake
    private readonly SackScoreboard _scoreboard = new();

    // RFC 9293 §3.3.1 send sequence variables (UNA, NXT, ISS: properties below).
    private uint _sendWindow;
    private uint _maxSendWindow;
    private SeqNum _sendWl1;
    private SeqNum _sendWl2;
    private int _sendWindowShift;

    /// <summary>End of the last sub-MSS segment sent (Minshall's snd_sml); starts at the ISS, so none is outstanding.</summary>
    private SeqNum _smallSegmentEnd;

    /// <summary>End of the highest range ever retransmitted (to tell whether a D-SACK covers a retransmission).</summary>
    private SeqNum _lastRetransmissionEnd;

    // Closing: our FIN, queued after every byte, then sent at _finSequence.
    private bool _finQueued;
    private bool _finSent;
    private SeqNum _finSequence;

    // Timers this side runs (deadlines in engine microseconds, 0 = off).
    private long _retransmitDeadline;
    private long _persistDeadline;
    private int _retransmissionsOfHead;
    private int _persistBackoff;

    /// <summary>TSval of the retransmission a timeout sent, for RFC 3522 Eifel detection (0 = none pending).</summary>
    private uint _timeoutTsVal;

    // The one timed segment (RFC 6298 §3, used when neither the scoreboard nor timestamps give a sample).
    private bool _rttTiming;
    private SeqNum _rttSequence;
    private long _rttSentAt;

    public TcpSender(TcpConnection connection, TcpLayer layer, TcpSettings settings)
    {
        _connection = connection;
        _layer = layer;
        _rtt = new RttEstimator(Micros(settings.InitialRto), Micros(settings.MinRto), Micros(settings.MaxRto));
        _congestion = settings.CongestionControl();
    }

    /// <summary>
    /// The connection is reused with <paramref name="settings"/> (the same as before): every send variable, timer and
    /// sample as a new connection has them; the queue and the scoreboard empty, a new congestion control (RFC 5681 §3.1:
    /// the initial window again), the loss recovery chosen at the next handshake.
    /// </summary>
    public void Recycle(TcpSettings settings)
    {
        _send.Recycle();
        _scoreboard.Recycle();
        _rtt.Recycle(Micros(settings.InitialRto));
        if (_congestion is NewRenoCongestionControl newReno && TcpSettings.IsNewReno(settings.CongestionControl))
        {
            newReno.Reset();
        }
        else
        {
            _congestion = settings.CongestionControl();
        }

        if (_recovery is RackTlpRecovery rack)
        {
            _spareRecovery = rack;
        }

        _recovery = PendingLossRecovery.Instance;
        _sendWindow = 0;
        _maxSendWindow = 0;
        _sendWl1 = default;
        _sendWl2 = default;
        _sendWindowShift = 0;
        _smallSegmentEnd = default;
        _lastRetransmissionEnd = default;
        _finQueued = false;
        _finSent = false;
        _finSequence = default;
        _retransmitDeadline = 0;
        _persistDeadline = 0;
        _retransmissionsOfHead = 0;
        _persistBackoff = 0;
        _timeoutTsVal = 0;
        _rttTiming = false;
        _rttSequence = default;
        _rttSentAt = 0;
        _rateStartAt = 0;
        _rateDelivered = 0;
        InitialSendSequence = default;
        SendUnacknowledged = default;
        SendNext = default;
        SendMax = default;
        Host = null;
        ProgressAt = 0;
        DeliveryRate = 0;
    }

    /// <summary>The handshake has settled SACK: the one moment the loss recovery of this connection is chosen.</summary>
    public void ChooseLossRecovery(bool sackPermitted)
    {
        var settings = _connection.Settings;
        if (sackPermitted && _spareRecovery is { } spare && TcpSettings.IsDefaultLossRecovery(settings.LossRecovery))
        {
            // A reused connection: the RACK-TLP it had, with its parts attached to this same sender, starts over.
            _spareRecovery = null;
            spare.Reuse();
            _recovery = spare;
            return;
        }

        _recovery = settings.LossRecovery(sackPermitted);
        _recovery.Attach(this);
    }

    /// <summary>ISS.</summary>
    public SeqNum InitialSendSequence { get; private set; }

    /// <summary>SND.UNA.</summary>
    public SeqNum SendUnacknowledged { get; private set; }

    /// <summary>SND.NXT.</summary>
    public SeqNum SendNext { get; private set; }

    /// <summary>Highest sequence number sent so far, plus one.</summary>
    public SeqNum SendMax { get; private set; }

    /// <summary>SND.WND: the peer's window, scaled.</summary>
    public uint PeerWindow => _sendWindow;

    /// <summary>Who owns the bytes of the descriptors this side sends.</summary>
    public ISendHost? Host { get; set; }

    public int MaxSegmentSize => _connection.MaxSegmentSize;

    public long SmoothedRttMicroseconds => _rtt.SmoothedRtt;

    public long RttVarianceMicroseconds => _rtt.RttVariance;

    public bool HasRttSample => _rtt.HasSample;

    public long RtoMicroseconds => _rtt.Rto;

    uint ILossRecoverySender.SendUnacknowledged => SendUnacknowledged.Value;

    uint ILossRecoverySender.SendNext => SendNext.Value;

    uint ILossRecoverySender.SendMax => SendMax.Value;

    public ICongestionControl CongestionControl => _congestion;

    public SackScoreboard Scoreboard => _scoreboard;

    public bool SackEnabled => _connection.SackPermitted;

    public long MinRttMicroseconds => _rtt.MinRtt == long.MaxValue ? 0 : _rtt.MinRtt;

    public ILossRecovery LossRecovery => _recovery;

    public long BytesInFlight => (uint)(SendNext - SendUnacknowledged) > (uint)(SendMax - SendUnacknowledged) ? 0 : (uint)(SendNext - SendUnacknowledged);

    public long NowMicroseconds => _layer.Clock.NowMicroseconds;

    /// <summary>Bytes queued by the application and not yet acknowledged.</summary>
    public long QueuedBytes => _send.Length;

    /// <summary>The application shut down its sending side: a FIN follows the last queued byte.</summary>
    public bool IsFinQueued => _finQueued;

    public bool IsQueueEmpty => _send.IsEmpty;

    /// <summary>Something waits to go out: queued bytes or a FIN.</summary>
    public bool HasPendingOutput => !_send.IsEmpty || _finQueued;

    /// <summary>The retransmission timer's deadline (RFC 6298), or 0.</summary>
    public long RetransmitDeadline => _retransmitDeadline;

    /// <summary>The persist timer's deadline (zero-window probes), or 0.</summary>
    public long PersistDeadline => _persistDeadline;

    /// <summary>Timeouts in a row without progress, for the limits of RFC 9293 §3.8.3 (R2).</summary>
    public int RetransmissionsOfHead => _retransmissionsOfHead;

    /// <summary>RFC 6298 §5.3, for loss recovery (a tail loss probe restarts the RTO, RFC 8985 §7.3).</summary>
    public void RestartRetransmitTimer()
    {
        if (SendUnacknowledged != SendMax)
        {
            ArmRetransmitTimer(NowMicroseconds);
        }
    }

    /// <summary>Counts what loss recovery reports, for TCP info and the stack's metrics.</summary>
    public void Report(RecoveryEvent recoveryEvent, int count = 1)
    {
        var statistics = _connection.Statistics;
        switch (recoveryEvent)
        {
            case RecoveryEvent.FastRecovery:
                statistics.FastRetransmits += count;
                _layer.Metrics.FastRecoveries.Add(count);
                break;
            case RecoveryEvent.TailLossProbe:
                statistics.TailLossProbes += count;
                _layer.Metrics.TailLossProbes.Add(count);
                break;
            case RecoveryEvent.SpuriousRetransmission:
                statistics.SpuriousRetransmissions += count;
                _layer.Metrics.SpuriousRetransmissions.Add(count);
                break;
            case RecoveryEvent.Undo:
                statistics.Undos += count;
                _layer.Metrics.Undos.Add(count);
                break;
            case RecoveryEvent.RackLoss:
                statistics.RackLosses += count;
                break;
        }
    }

    // ---- Opening and closing ----

    /// <summary>ISS chosen (RFC 6528): every send variable and the queue start from it.</summary>
    public void Initialize(SeqNum initialSendSequence)
    {
        InitialSendSequence = initialSendSequence;
        SendUnacknowledged = initialSendSequence;
        SendNext = initialSendSequence;
        SendMax = initialSendSequence;
        _smallSegmentEnd = initialSendSequence;
        _send.Reset((initialSendSequence + 1).Value);
    }

    /// <summary>The peer's window scale from its SYN (RFC 7323 §2.2), 0 when scaling is off.</summary>
    public void SetPeerWindowShift(int shift) => _sendWindowShift = shift;

    /// <summary>Our SYN occupies ISS: the next new byte follows it.</summary>
    public void OnSynSending()
    {
        SendNext = InitialSendSequence + 1;
        SendMax = SendNext;
    }

    /// <summary>SYN-SENT: the peer's SYN-ACK acknowledged our SYN.</summary>
    public void OnSynAcknowledged(SeqNum ack) => SendUnacknowledged = ack;

    /// <summary>The handshake is over: congestion control starts, the SYN's timer stops, SND.UNA lies past the SYN.</summary>
    public void OnEstablished()
    {
        _congestion.Initialize(MaxSegmentSize, NowMicroseconds);
        _retransmitDeadline = 0;
        _retransmissionsOfHead = 0;
        _rtt.ResetBackoff();
        SendUnacknowledged = SeqNum.Max(SendUnacknowledged, InitialSendSequence + 1);
    }

    /// <summary>Half-close (RFC 9293 §3.10.4): FIN after every queued byte.</summary>
    public void QueueFin()
    {
        NoteQueueStarting();
        _finQueued = true;
    }

    /// <summary>Nothing was unacknowledged: the user timeout (RFC 5482) counts from now.</summary>
    private void NoteQueueStarting()
    {
        if (!HasUnacknowledged)
        {
            ProgressAt = NowMicroseconds;
        }
    }

    /// <summary>Data or a FIN is queued or in flight and not acknowledged.</summary>
    public bool HasUnacknowledged => SendUnacknowledged != SendMax || !_send.IsEmpty || (_finQueued && !_finSent);

    /// <summary>
    /// When the acknowledgments last moved forward, or when queuing started with nothing unacknowledged: the user
    /// timeout (RFC 5482) runs from here while <see cref="HasUnacknowledged"/>.
    /// </summary>
    public long ProgressAt { get; private set; }

    /// <summary>Queued bytes never sent yet (TCP_NOTSENT_LOWAT's measure).</summary>
    public long NotSentBytes => Math.Max(0, new SeqNum(_send.EndSequence) - SendMax);

    /// <summary>Bytes acknowledged per second over the last round trip or more of acknowledgments (Linux's delivery_rate, without its per-segment snapshots).</summary>
    public long DeliveryRate { get; private set; }

    // The interval the delivery rate is measured over: from the first new data sent into an empty pipe, or the last sample.
    private long _rateStartAt;
    private long _rateDelivered;

    /// <summary>Counts <paramref name="acknowledged"/> bytes into the delivery rate; samples once the interval spans a smoothed RTT or the pipe empties.</summary>
    private void SampleDeliveryRate(long now, long acknowledged)
    {
        _rateDelivered += acknowledged;
        var elapsed = now - _rateStartAt;
        if (elapsed > 0 && (elapsed >= Math.Max(_rtt.SmoothedRtt, 1000) || SendUnacknowledged == SendMax))
        {
            DeliveryRate = _rateDelivered * 1_000_000 / elapsed;
            _rateStartAt = now;
            _rateDelivered = 0;
        }
    }

    /// <summary>Our FIN has been sent and <paramref name="ack"/> acknowledges it.</summary>
    public bool IsFinAcknowledgedBy(SeqNum ack) => _finSent && ack > _finSequence;

    /// <summary>Queues a descriptor of the host's memory. The host learns its fate through Acknowledged or Failed.</summary>
    public void Enqueue(nint address, int length, long hostToken, long hostTag)
    {
        NoteQueueStarting();
        _send.Append(Rent(address, length, hostToken, hostTag));
        _connection.RequestOutput();
    }

    /// <summary>A descriptor the connection cannot take: the host learns at once.</summary>
    public void Refuse(nint address, int length, long hostToken, long hostTag, TcpConnectionException error)
    {
        var d = Rent(address, length, hostToken, hostTag);
        Host!.Failed(d, error);
        d.Reset();
    }

    private SendDescriptor Rent(nint address, int length, long hostToken, long hostTag)
    {
        var d = _send.Rent();
        d.Address = address;
        d.Length = length;
        d.HostToken = hostToken;
        d.HostTag = hostTag;
        return d;
    }

    /// <summary>The connection ended: every unacknowledged descriptor fails (nothing is dropped silently).</summary>
    public void FailAll(TcpConnectionException error)
    {
        if (Host is not null && !_send.IsEmpty)
        {
            _send.FailAll(Host, error);
        }
    }

    /// <summary>TIME-WAIT: the peer acknowledged our FIN, so every queued byte arrived; release them all.</summary>
    public void ReleaseAll()
    {
        if (!_send.IsEmpty && Host is not null)
        {
            _send.Acknowledge(_send.EndSequence, Host);
        }
    }

    /// <summary>The descriptor holding <paramref name="sequence"/> and the offset in it, for the segment being built.</summary>
    public SendDescriptor? Locate(uint sequence, out int offset) => _send.Locate(sequence, out offset);

    // ---- ACK processing (RFC 9293 §3.10.7.4 fifth check) ----

    /// <summary>
    /// RFC 5961 §5.2: SEG.ACK is acceptable only in [SND.UNA - MAX.SND.WND, SND.NXT]. SND.MAX stands for SND.NXT:
    /// a timeout rewinds SND.NXT (go-back-N) while the peer may hold everything up to SND.MAX. MAX.SND.WND is
    /// bounded by what has been acknowledged so far (as Linux does): no ACK below ISS + 1 acknowledges anything
    /// we sent. The connection answers the two failures (an ACK, then the segment is dropped).
    /// </summary>
    public AckAcceptability ClassifyAck(SeqNum ack)
    {
        if (ack > SendMax)
        {
            return AckAcceptability.Unsent;
        }

        return ack < OldestAcceptableAck ? AckAcceptability.TooOld : AckAcceptability.Acceptable;
    }

    /// <summary>RFC 5961 §5.2: SND.UNA - MAX.SND.WND, the oldest ACK a legitimate peer could still send (never before ISS + 1).</summary>
    public SeqNum OldestAcceptableAck
    {
        get
        {
            var acknowledged = (uint)(SendUnacknowledged - (InitialSendSequence + 1));
            return SendUnacknowledged - (int)Math.Min(_maxSendWindow, acknowledged);
        }
    }

    /// <summary>The shift applied to the peer's window field (RFC 7323 §2.3).</summary>
    public int PeerWindowShift => _sendWindowShift;

    /// <summary>
    /// The ACK field of an acceptable segment in a synchronized state, one that <see cref="ClassifyAck"/> accepted.
    /// Returns false when the segment must be dropped.
    /// </summary>
    public bool ProcessAck(SeqNum ack, SeqNum seq, ushort rawWindow, bool pureAck, in TcpOptions options)
    {
        System.Diagnostics.Debug.Assert(ClassifyAck(ack) == AckAcceptability.Acceptable, "an unacceptable ACK reached ProcessAck");

        var newlyAcked = ack > SendUnacknowledged ? (long)(uint)(ack - SendUnacknowledged) : 0;
        var windowBefore = _sendWindow;
        var window = (uint)rawWindow << _sendWindowShift;

        // SACK (RFC 2018) and D-SACK (RFC 2883) onto the scoreboard, then the cumulative ACK.
        var delivery = new DeliveryInfo();
        if (SackEnabled && options.SackBlockCount > 0)
        {
            ProcessSackBlocks(ack, options, ref delivery);
        }

        if (newlyAcked > 0)
        {
            _scoreboard.OnCumulativeAck(ack.Value, ref delivery.NewestSentAt, ref delivery.NewestEnd, ref delivery.NewestWasRetransmitted);
        }

        // RFC 5681 §2 duplicate ACK; with SACK, an ACK that SACKs new data counts too (RFC 6675 §2).
        var isDuplicate = newlyAcked == 0 && ack == SendUnacknowledged && SendMax != SendUnacknowledged
            && ((pureAck && window == windowBefore) || delivery.Sacked > 0);

        if (newlyAcked > 0)
        {
            OnNewDataAcknowledged(ack, newlyAcked, options, delivery);
        }

        if (ack >= SendUnacknowledged)
        {
            UpdateSendWindow(seq, ack, rawWindow, isSyn: false);
        }

        if (isDuplicate)
        {
            _connection.Statistics.DuplicateAcksReceived++;
        }

        if (newlyAcked > 0 || isDuplicate || delivery.DsackBytes > 0)
        {
            _recovery.OnAck(new AckEvent(ack.Value, newlyAcked, isDuplicate, delivery.Sacked, delivery.DsackBytes, delivery.DsackCoversRetransmission, delivery.NewestSentAt, delivery.NewestEnd, delivery.NewestWasRetransmitted));
        }

        if (HasPendingOutput)
        {
            _connection.RequestOutput();
        }

        return true;
    }

    /// <summary>The ACK moves nothing: it acknowledges SND.UNA and repeats the window we hold (a duplicate candidate for PAWS).</summary>
    public bool IsUnchangedAck(SeqNum ack, ushort rawWindow) =>
        ack == SendUnacknowledged && ((uint)rawWindow << _sendWindowShift) == _sendWindow;

    /// <summary>
    /// Marks SACKed segments and recognises a D-SACK (RFC 2883 §4): a first block below the cumulative ACK,
    /// or inside the second block, reports a duplicate arrival, not new data.
    /// </summary>
    private void ProcessSackBlocks(SeqNum ack, in TcpOptions options, ref DeliveryInfo delivery)
    {
        for (var i = 0; i < options.SackBlockCount; i++)
        {
            var block = options.GetSackBlock(i);
            var left = new SeqNum(block.Left);
            var right = new SeqNum(block.Right);
            if (!(left < right) || right > SendMax)
            {
                continue; // Malformed or beyond what we sent: ignore the block (RFC 2018 §5 leaves it to us).
            }

            if (i == 0 && (right <= ack
                || (options.SackBlockCount > 1 && left >= new SeqNum(options.GetSackBlock(1).Left) && right <= new SeqNum(options.GetSackBlock(1).Right))))
            {
                delivery.DsackBytes = (uint)(right - left);
                delivery.DsackCoversRetransmission = _lastRetransmissionEnd != default
                    && left < _lastRetransmissionEnd && left >= InitialSendSequence;
                continue;
            }

            if (right <= ack)
            {
                continue;
            }

            delivery.Sacked += _scoreboard.OnSackBlock(SeqNum.Max(left, ack).Value, right.Value, ref delivery.NewestSentAt, ref delivery.NewestEnd, ref delivery.NewestWasRetransmitted);
        }
    }

    /// <summary>What one ACK delivered, gathered for loss recovery.</summary>
    private struct DeliveryInfo
    {
        public long Sacked;
        public long DsackBytes;
        public bool DsackCoversRetransmission;
        public long NewestSentAt;
        public uint NewestEnd;
        public bool NewestWasRetransmitted;

        public DeliveryInfo() => NewestSentAt = -1;
    }

    private void OnNewDataAcknowledged(SeqNum ack, long newlyAcked, in TcpOptions options, in DeliveryInfo delivery)
    {
        var now = NowMicroseconds;
        var rttSample = -1L;
        var timestamps = _connection.TimestampsEnabled;

        // RFC 3522 Eifel detection: the first ACK after a timeout echoes a timestamp older than the
        // retransmission's: the original arrived, the timeout was spurious.
        if (_timeoutTsVal != 0 && timestamps && options.HasTimestamp)
        {
            var spurious = options.TsEcr != 0 && SequenceNumber.Lt(options.TsEcr, _timeoutTsVal);
            _timeoutTsVal = 0;
            if (spurious)
            {
                _recovery.OnSpuriousTimeout();
            }
        }

        // RTT, in microseconds, from the most recently sent segment this ACK delivered when it was sent only
        // once (Karn's rule; the scoreboard knows each send time, as Linux's skb timestamps do); else the
        // timestamp echo (RFC 7323 §4.1, millisecond ticks: too coarse for a LAN); else the one timed segment.
        if (delivery.NewestSentAt >= 0 && !delivery.NewestWasRetransmitted)
        {
            rttSample = now - delivery.NewestSentAt;
            _rttTiming = false;
        }
        else if (timestamps && options.HasTimestamp && options.TsEcr != 0)
        {
            rttSample = Math.Max(0, ((long)(uint)(_connection.TimestampNow(now) - options.TsEcr)) * 1000);
        }
        else if (_rttTiming && ack > _rttSequence)
        {
            rttSample = now - _rttSentAt;
            _rttTiming = false;
        }

        if (rttSample >= 0)
        {
            _rtt.AddSample(rttSample);
            _layer.Metrics.RecordRtt(rttSample);
        }

        SendUnacknowledged = ack;
        if (SendNext < ack)
        {
            SendNext = ack;
        }

        ProgressAt = now;
        SampleDeliveryRate(now, newlyAcked);
        _send.Acknowledge(ack.Value, Host!);
        _connection.ResetKeepaliveProbes();
        _connection.SendWatcher?.OnSendProgress();

        if (!_recovery.InRecovery)
        {
            var appLimited = SendNext >= new SeqNum(_send.EndSequence) && !_finQueued;
            _congestion.OnAck(new AckSample(newlyAcked, BytesInFlight, rttSample, now, appLimited, ack.Value, SendMax.Value));
        }

        // RFC 6298 §5.2/5.3: stop the timer when all is acknowledged, else restart it.
        if (SendUnacknowledged == SendMax)
        {
            _retransmitDeadline = 0;
            _retransmissionsOfHead = 0;
            _rtt.ResetBackoff();
        }
        else
        {
            _retransmissionsOfHead = 0;
            ArmRetransmitTimer(now);
        }
    }

    /// <summary>§3.10.7.4: update the send window only from segments newer than the last update.</summary>
    public void UpdateSendWindow(SeqNum seq, SeqNum ack, ushort rawWindow, bool isSyn)
    {
        if (isSyn || _sendWl1 < seq || (_sendWl1 == seq && _sendWl2 <= ack))
        {
            // RFC 7323 §2.2: the window of a SYN is never scaled.
            _sendWindow = isSyn ? rawWindow : (uint)rawWindow << _sendWindowShift;
            _maxSendWindow = Math.Max(_maxSendWindow, _sendWindow);
            _sendWl1 = seq;
            _sendWl2 = ack;
            if (_sendWindow > 0)
            {
                _persistDeadline = 0;
                _persistBackoff = 0;
            }
        }
    }

    /// <summary>The SYN's RTT is a valid first sample unless it was retransmitted (Karn).</summary>
    public void TakeRttSampleForSyn(in TcpOptions options)
    {
        if (_rttTiming)
        {
            _rtt.AddSample(NowMicroseconds - _rttSentAt);
            _rttTiming = false;
        }
        else if (_connection.TimestampsEnabled && options.HasTimestamp && options.TsEcr != 0)
        {
            _rtt.AddSample(((long)(uint)(_connection.TimestampNow(NowMicroseconds) - options.TsEcr)) * 1000);
        }
    }

    // ---- Data output ----

    /// <summary>A small segment is sent and not yet acknowledged (bounded by SND.MAX, so an old mark cannot wrap).</summary>
    private bool SmallSegmentOutstanding =>
        _smallSegmentEnd > SendUnacknowledged && _smallSegmentEnd <= SendMax;

    /// <summary>Sends new data (and the FIN) as far as the windows, Nagle and loss recovery allow.</summary>
    public void OutputData()
    {
        var sentBefore = SendMax;
        SendNewData();
        if (SendMax != sentBefore)
        {
            NotifySendWatcher();
        }
    }

    private void SendNewData()
    {
        while (true)
        {
            var dataEnd = new SeqNum(_send.EndSequence);
            var available = Math.Max(0, dataEnd - SendNext);
            var finDue = _finQueued && available == 0 && SendNext == dataEnd && _connection.State is TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck
                && (!_finSent || SendNext <= _finSequence);
            if (available == 0 && !finDue)
            {
                // No new data, but loss recovery may still have lost segments to resend (RFC 6675 §5 NextSeg rule 1,
                // RFC 8985 §6.3): its repair step must run even at the tail of a stream.
                _recovery.RepairLosses();
                break;
            }

            // The peer's window bounds new data by sequence space; loss recovery and congestion control bound
            // what enters the network, after loss recovery has retransmitted what it holds lost.
            var peerUsable = (long)_sendWindow - (long)(uint)(SendNext - SendUnacknowledged);
            _recovery.RepairLosses();
            var usable = Math.Min(peerUsable, _recovery.SendQuota);
            if (_connection.State == TcpState.Closed)
            {
                return;
            }

            if (available > 0 && usable <= 0)
            {
                if (_sendWindow == 0 && BytesInFlight == 0)
                {
                    ArmPersist(NowMicroseconds);
                }

                break;
            }

            var segmentSize = _connection.PayloadLimit();
            var length = (int)Math.Min(Math.Min(available, segmentSize), Math.Max(0, usable));
            if (length > 0 && _connection.IdentifyMode == IdentifyMode.Pinned)
            {
                length = _send.ClampToPieces(SendNext.Value, length, _layer.Ip.MaxGatherPieces);
            }

            var gsoSize = 0;
            if (length == segmentSize && _connection.IdentifyMode == IdentifyMode.Pinned && _layer.MaxOffloadPayload > 0
                && SendNext >= SendMax)
            {
                // Segmentation offload: several full segments of new data as one super-segment that the link has cut
                // (the same segments, headers and options as one by one, for one message and one pass through the
                // kernel's device layer). The scoreboard and loss recovery still see each segment (NoteSegments).
                var room = Math.Min(Math.Min(available, usable), _layer.MaxOffloadPayload);
                var total = (int)(room / segmentSize * segmentSize);
                if (total >= 2 * segmentSize)
                {
                    total = _send.ClampToPieces(SendNext.Value, total, _layer.Ip.MaxGatherPieces) / segmentSize * segmentSize;
                    if (total >= 2 * segmentSize)
                    {
                        length = total;
                        gsoSize = segmentSize;
                    }
                }
            }

            // A full-sized segment is never held: full means what fits now (PayloadLimit: the MSS less the SACK blocks
            // this segment must carry while we hold out-of-order data), not the bare MSS.
            if (length > 0 && length < segmentSize && BytesInFlight > 0)
            {
                // Nagle (RFC 9293 §3.7.4) with Minshall's modification (draft-minshall-nagle-01, as Linux does): hold a
                // small segment only while an earlier small segment is unacknowledged, unless it ends the stream. The
                // classic rule also holds the short tail of every write behind the full segments before it, which
                // costs a round trip (or the peer's delayed ACK) per response and per bulk transfer.
                var isLast = length == available;
                if ((_connection.Settings.Nagle && SmallSegmentOutstanding && !(isLast && _finQueued)) || (!isLast && length < _maxSendWindow / 2))
                {
                    // The second test is sender-side SWS avoidance (§3.8.6.2.1): do not dribble into a small window.
                    break;
                }
            }

            var flags = TcpFlags.Ack | PushFlag(SendNext, length);
            if (_finQueued && SendNext + length == dataEnd)
            {
                flags |= TcpFlags.Fin;
            }

            var isRetransmission = SendNext < SendMax;
            if (!isRetransmission && SendUnacknowledged == SendMax)
            {
                // New data into an empty pipe: the delivery rate's interval starts here, not across the idle time before.
                _rateStartAt = NowMicroseconds;
                _rateDelivered = 0;
            }

            if (!_connection.Emit(SendNext.Value, flags, length, isRetransmission, gsoSize))
            {
                break;
            }

            if (gsoSize > 0)
            {
                NoteSegments(SendNext, length, gsoSize, (flags & TcpFlags.Fin) != 0);
            }
            else
            {
                NoteTransmitted(SendNext, length + ((flags & TcpFlags.Fin) != 0 ? 1 : 0), isRetransmission);
            }

            if (!isRetransmission && length > 0 && !_rttTiming)
            {
                _rttTiming = true;
                _rttSequence = SendNext;
                _rttSentAt = NowMicroseconds;
            }

            if (length < segmentSize && length > 0)
            {
                _smallSegmentEnd = SendNext + length;
            }

            SendNext += length;
            if ((flags & TcpFlags.Fin) != 0)
            {
                OnFinSent(SendNext);
                SendNext++;
            }

            SendMax = SeqNum.Max(SendMax, SendNext);
            if (_retransmitDeadline == 0)
            {
                ArmRetransmitTimer(NowMicroseconds);
            }

            if ((flags & TcpFlags.Fin) != 0)
            {
                break;
            }
        }
    }

    /// <summary>New data may have left: a connection waiting for its not-sent bytes to fall hears of it.</summary>
    private void NotifySendWatcher() => _connection.SendWatcher?.OnSendProgress();

    private void OnFinSent(SeqNum finSequence)
    {
        if (_finSent)
        {
            return;
        }

        _finSent = true;
        _finSequence = finSequence;
        _connection.OnFinSent();
    }

    /// <summary>Resends one segment from <paramref name="sequence"/> through the host (loss recovery's only way to resend).</summary>
    public int Retransmit(SeqNum sequence, int maxBytes)
    {
        if (sequence < SendUnacknowledged || !(sequence < SendMax))
        {
            return 0;
        }

        if (_connection.State is TcpState.SynSent or TcpState.SynReceived)
        {
            _connection.RetransmitSyn();
            return 0;
        }

        // A retransmission never reaches past what was sent before (SND.MAX): re-segmenting with fewer
        // option bytes could otherwise send new data the peer may acknowledge beyond SND.MAX.
        var sentDataEnd = SeqNum.Min(new SeqNum(_send.EndSequence), SendMax);
        var length = Math.Max(0, Math.Min(Math.Min(maxBytes, _connection.PayloadLimit()), sentDataEnd - sequence));
        if (length > 0 && _connection.IdentifyMode == IdentifyMode.Pinned)
        {
            length = _send.ClampToPieces(sequence.Value, length, _layer.Ip.MaxGatherPieces);
        }

        var flags = TcpFlags.Ack | PushFlag(sequence, length);
        if (_finSent && sequence + length == _finSequence)
        {
            flags |= TcpFlags.Fin;
        }

        if (length == 0 && (flags & TcpFlags.Fin) == 0)
        {
            return 0;
        }

        if (!_connection.Emit(sequence.Value, flags, length, isRetransmission: true))
        {
            return 0;
        }

        NoteTransmitted(sequence, length + ((flags & TcpFlags.Fin) != 0 ? 1 : 0), isRetransmission: true);

        // Karn's rule: a retransmission makes the timed segment's sample ambiguous.
        _rttTiming = false;
        if (_retransmitDeadline == 0)
        {
            ArmRetransmitTimer(NowMicroseconds);
        }

        return length;
    }

    int ILossRecoverySender.Retransmit(uint sequence, int maxBytes) => Retransmit(new SeqNum(sequence), maxBytes);

    /// <summary>Sends one segment of new data, if queued and the peer's window allows (a tail loss probe). Returns bytes sent.</summary>
    public int SendNewSegment()
    {
        var available = new SeqNum(_send.EndSequence) - SendNext;
        var peerUsable = (long)_sendWindow - (long)(uint)(SendNext - SendUnacknowledged);
        if (available <= 0 || peerUsable <= 0 || !(SendNext >= SendMax)
            || _connection.State is not (TcpState.Established or TcpState.CloseWait))
        {
            return 0;
        }

        var length = (int)Math.Min(Math.Min(available, _connection.PayloadLimit()), peerUsable);
        if (_connection.IdentifyMode == IdentifyMode.Pinned)
        {
            length = _send.ClampToPieces(SendNext.Value, length, _layer.Ip.MaxGatherPieces);
        }

        var flags = TcpFlags.Ack | PushFlag(SendNext, length);
        if (!_connection.Emit(SendNext.Value, flags, length, isRetransmission: false))
        {
            return 0;
        }

        NoteTransmitted(SendNext, length, isRetransmission: false);
        SendNext += length;
        SendMax = SeqNum.Max(SendMax, SendNext);
        if (_retransmitDeadline == 0)
        {
            ArmRetransmitTimer(NowMicroseconds);
        }

        NotifySendWatcher();
        return length;
    }

    /// <summary>
    /// PSH (RFC 1122 §4.2.2.2): set on the segment that empties the send queue, the last byte queued so far, which the
    /// queue's last descriptor remembers. A retransmission (timeout, fast retransmit, RACK, probe, go-back-N) decides
    /// it from the descriptors the same way: it carries PSH when it holds the end of a write that was pushed when first
    /// sent, so the flag survives resegmentation too. New data beyond SND.MAX holds no such end.
    /// </summary>
    private TcpFlags PushFlag(SeqNum sequence, int length)
    {
        if (length <= 0)
        {
            return TcpFlags.None;
        }

        if (sequence + length == new SeqNum(_send.EndSequence))
        {
            _send.MarkLastPushed();
            return TcpFlags.Psh;
        }

        return sequence < SendMax && _send.CoversPushedEnd(sequence.Value, length) ? TcpFlags.Psh : TcpFlags.None;
    }

    /// <summary>The segments of a super-segment of new data, one by one, as the link cut it (FIN on the last).</summary>
    private void NoteSegments(SeqNum sequence, int length, int segmentSize, bool fin)
    {
        var now = NowMicroseconds; // one clock read for the whole super-segment: its segments leave together
        for (var offset = 0; offset < length; offset += segmentSize)
        {
            var n = Math.Min(segmentSize, length - offset);
            var last = offset + n == length;
            NoteTransmitted(sequence + offset, n + (last && fin ? 1 : 0), isRetransmission: false, now);
        }
    }

    /// <summary>Every data segment (and FIN) that left: the scoreboard and loss recovery learn of it.</summary>
    private void NoteTransmitted(SeqNum sequence, int sequenceLength, bool isRetransmission) =>
        NoteTransmitted(sequence, sequenceLength, isRetransmission, NowMicroseconds);

    private void NoteTransmitted(SeqNum sequence, int sequenceLength, bool isRetransmission, long now)
    {
        if (sequenceLength == 0)
        {
            return;
        }

        if (isRetransmission)
        {
            var end = sequence + sequenceLength;
            _scoreboard.OnRetransmit(sequence.Value, end.Value, now);
            // 0 means "none yet"; a serial-number Max against 0 (RFC 1982) keeps 0 whenever the sequence lies in the upper
            // half of the space, and then no D-SACK was ever credited to a retransmission (RFC 3708 undo never ran).
            _lastRetransmissionEnd = _lastRetransmissionEnd == default ? end : SeqNum.Max(_lastRetransmissionEnd, end);
        }
        else
        {
            _scoreboard.OnTransmit(sequence.Value, (sequence + sequenceLength).Value, now);
        }

        _recovery.OnTransmitted(sequence.Value, sequenceLength, isRetransmission);
    }

    /// <summary>The next new transmission starts again at <paramref name="sequence"/> (go-back-N after a timeout).</summary>
    public void RewindSendNext(SeqNum sequence)
    {
        if (sequence >= SendUnacknowledged && sequence < SendNext)
        {
            SendNext = sequence;
            _rttTiming = false;
            _connection.RequestOutput();
        }
    }

    void ILossRecoverySender.RewindSendNext(uint sequence) => RewindSendNext(new SeqNum(sequence));

    // ---- RTT timing and timers ----

    /// <summary>Times the segment that starts at <paramref name="sequence"/> (the SYN), for the first RTT sample.</summary>
    public void TimeSegment(SeqNum sequence)
    {
        _rttTiming = true;
        _rttSequence = sequence;
        _rttSentAt = NowMicroseconds;
    }

    /// <summary>Karn's rule: a retransmission makes the timed segment's sample ambiguous.</summary>
    public void StopRttTiming() => _rttTiming = false;

    public void ArmRetransmitTimer(long now) => _retransmitDeadline = now + _rtt.Rto;

    /// <summary>The retransmission timer is due: it stops before the connection decides what its expiry means.</summary>
    public void DisarmRetransmitTimer() => _retransmitDeadline = 0;

    public void CancelTimers()
    {
        _retransmitDeadline = 0;
        _persistDeadline = 0;
    }

    /// <summary>
    /// The retransmission timer expired (RFC 6298 §5.4-5.6): counts the timeout and backs the RTO off. The
    /// connection has checked the retry limits and resends a SYN itself.
    /// </summary>
    public void OnRetransmitTimerExpired()
    {
        _retransmissionsOfHead++;
        _connection.Statistics.Timeouts++;
        _layer.Metrics.Timeouts.Add(1);
        _rtt.OnTimeout();
        _rttTiming = false;
    }

    /// <summary>RFC 6298 §5.4: after a timeout in a synchronized state, retransmit the earliest unacknowledged segment now.</summary>
    public void RetransmitAfterTimeout(long now)
    {
        if (SendUnacknowledged == SendMax)
        {
            return;
        }

        _recovery.OnRetransmissionTimeout();

        // §5.4: retransmit the earliest segment not yet acknowledged, now, whatever the window. Its timestamp
        // lets the first ACK after it prove the timeout spurious (RFC 3522 Eifel detection).
        _timeoutTsVal = _connection.TimestampsEnabled ? Math.Max(1u, _connection.TimestampNow(now)) : 0;
        var resent = Retransmit(SendUnacknowledged, MaxSegmentSize);
        if (SendNext < SendUnacknowledged + resent)
        {
            SendNext = SendUnacknowledged + resent;
        }

        ArmRetransmitTimer(now);
        _connection.RequestOutput();
    }

    private void ArmPersist(long now)
    {
        if (_persistDeadline != 0)
        {
            return;
        }

        var interval = Math.Min(_rtt.BaseRto << Math.Min(_persistBackoff, 16), Micros(_connection.Settings.MaxRto));
        _persistDeadline = now + interval;
    }

    /// <summary>
    /// Zero-window probe: a segment the receiver must acknowledge without consuming data (SEG.SEQ = SND.UNA-1),
    /// which carries its current window back. Probing continues while the peer answers (RFC 1122 §4.2.2.17).
    /// </summary>
    public void OnPersistTimer(long now)
    {
        _persistDeadline = 0;
        if (_sendWindow != 0 || _send.IsEmpty || _connection.State is not (TcpState.Established or TcpState.CloseWait))
        {
            _persistBackoff = 0;
            return;
        }

        _connection.Statistics.ZeroWindowProbes++;
        _connection.Emit((SendUnacknowledged - 1).Value, TcpFlags.Ack, 0, isRetransmission: false);
        _persistBackoff++;
        ArmPersist(now);
    }

    private static long Micros(TimeSpan t) => t.Ticks / 10;
}
