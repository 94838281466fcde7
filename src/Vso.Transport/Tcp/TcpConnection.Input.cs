using Microsoft.Extensions.Logging;
using Vso.Transport.Engine;
using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>SEGMENT ARRIVES, RFC 9293 §3.10.7.3 and §3.10.7.4.</summary>
internal sealed partial class TcpConnection
{
    public void OnSegment(in TcpSegment segment)
    {
        Statistics.SegmentsReceived++;
        if (State == TcpState.SynSent)
        {
            OnSegmentInSynSent(segment);
            return;
        }

        if (State is TcpState.Closed or TcpState.Listen)
        {
            return;
        }

        var flags = segment.Flags;
        var seq = segment.SequenceNumber;
        var payload = segment.Payload;
        var options = segment.Options;
        var segLen = payload.Length + ((flags & TcpFlags.Syn) != 0 ? 1 : 0) + ((flags & TcpFlags.Fin) != 0 ? 1 : 0);

        // RFC 7323 §5.3 R1: PAWS drops segments whose timestamp is older than TS.Recent, except a reordered
        // pure duplicate ACK (Linux's tcp_disordered_ack): it cannot be an old duplicate from an earlier
        // incarnation that does harm, and its SACK blocks are news loss recovery needs.
        if (_timestamps && options.HasTimestamp && (flags & TcpFlags.Rst) == 0 && SequenceNumber.Lt(options.TsVal, _tsRecent)
            && !IsDisorderedAck(flags, seq, payload.Length, segment.AcknowledgmentNumber, segment.Window))
        {
            Statistics.DroppedSegments++;
            SendAck();
            return;
        }

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost, send it again.
        if (State == TcpState.SynReceived && (flags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn && seq == InitialReceiveSequence)
        {
            RetransmitSyn();
            return;
        }

        // RFC 9293 §3.5 figure 8, line 6: in a simultaneous open the peer's SYN-ACK repeats its SYN (SEG.SEQ = IRS,
        // left of RCV.NXT, so the acceptability test below would drop it) and acknowledges ours; it completes the
        // handshake (as in Linux's tcp_validate_incoming). The SYN's window is never scaled (RFC 7323 §2.2).
        if (State == TcpState.SynReceived && Listener is null && (flags & (TcpFlags.Syn | TcpFlags.Ack | TcpFlags.Rst)) == (TcpFlags.Syn | TcpFlags.Ack)
            && seq == InitialReceiveSequence && segment.AcknowledgmentNumber == SendNext && payload.Length == 0)
        {
            UpdateSendWindow(seq, segment.AcknowledgmentNumber, segment.Window, isSyn: true);
            TakeRttSampleForSyn(options);
            Establish();
            return;
        }

        // First check: is the sequence number acceptable (§3.10.7.4, the four cases)?
        if (!IsAcceptable(seq, segLen))
        {
            Statistics.DroppedSegments++;
            if ((flags & TcpFlags.Rst) == 0)
            {
                if (payload.Length > 0 && SequenceNumber.Le(seq + (uint)payload.Length, ReceiveNext))
                {
                    // An old duplicate: tell the sender with a D-SACK (RFC 2883 §4 (1)), its retransmission was spurious.
                    NoteDuplicate(seq, seq + (uint)payload.Length);
                }

                SendAck();
            }

            if (State == TcpState.TimeWait && (flags & TcpFlags.Fin) != 0)
            {
                // A retransmitted FIN in TIME-WAIT: acknowledge it (done above) and restart the 2*MSL timer.
                StartTimeWait();
            }

            return;
        }

        // Second check: RST, with RFC 5961 §3.2's blind-reset defence that RFC 9293 recommends.
        if ((flags & TcpFlags.Rst) != 0)
        {
            if (seq != ReceiveNext)
            {
                SendAck(); // challenge ACK
                return;
            }

            OnResetReceived();
            return;
        }

        // Fourth check: a SYN in a synchronized state gets a challenge ACK (RFC 5961 §4.2, RFC 9293 §3.10.7.4).
        if ((flags & TcpFlags.Syn) != 0)
        {
            SendAck();
            return;
        }

        // Fifth check: segments without ACK are dropped.
        if ((flags & TcpFlags.Ack) == 0)
        {
            return;
        }

        // RFC 7323 §4.3 (3): remember the timestamp of the segment that covers Last.ACK.sent.
        if (_timestamps && options.HasTimestamp && SequenceNumber.Le(seq, _lastAckSent) && SequenceNumber.Ge(options.TsVal, _tsRecent))
        {
            _tsRecent = options.TsVal;
        }

        if (!ProcessAck(segment.AcknowledgmentNumber, seq, segment.Window, payload.Length == 0 && (flags & TcpFlags.Fin) == 0, options))
        {
            return;
        }

        if (State == TcpState.Closed)
        {
            return;
        }

        // Seventh: segment text, in the states that still receive.
        if (payload.Length > 0 && State is TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2)
        {
            ReceiveText(seq, payload, (flags & TcpFlags.Fin) != 0);
        }
        else if ((flags & TcpFlags.Fin) != 0 && State is TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2)
        {
            NoteFin(seq + (uint)payload.Length);
        }
        else if ((flags & TcpFlags.Fin) != 0 && State == TcpState.TimeWait)
        {
            SendAck();
            StartTimeWait();
        }

        if (_hasOutOfOrderFin && _outOfOrderFin == ReceiveNext)
        {
            _hasOutOfOrderFin = false;
            ProcessFin();
        }
    }

    /// <summary>A pure ACK at RCV.NXT that acknowledges nothing new and does not change the window.</summary>
    private bool IsDisorderedAck(TcpFlags flags, uint seq, int payloadLength, uint ack, ushort rawWindow) =>
        (flags & (TcpFlags.Syn | TcpFlags.Fin | TcpFlags.Rst | TcpFlags.Ack)) == TcpFlags.Ack
        && payloadLength == 0
        && seq == ReceiveNext
        && ack == SendUnacknowledged
        && ((uint)rawWindow << _sendWindowShift) == _sendWindow;

    private void OnSegmentInSynSent(in TcpSegment segment)
    {
        var flags = segment.Flags;
        var ack = segment.AcknowledgmentNumber;
        var ackAcceptable = false;
        if ((flags & TcpFlags.Ack) != 0)
        {
            // §3.10.7.3 first check: an ACK outside (ISS, SND.NXT] gets a reset unless it is one.
            if (SequenceNumber.Le(ack, InitialSendSequence) || SequenceNumber.Gt(ack, SendNext))
            {
                if ((flags & TcpFlags.Rst) == 0)
                {
                    _layer.SendResetFor(Id, ack, 0, TcpFlags.Rst);
                }

                return;
            }

            ackAcceptable = true;
        }

        if ((flags & TcpFlags.Rst) != 0)
        {
            if (ackAcceptable)
            {
                Terminate(new TcpConnectionException(TcpError.Refused, $"Connection to {Id.RemoteAddress}:{Id.RemotePort} was refused (RST)."));
            }

            return;
        }

        if ((flags & TcpFlags.Syn) == 0)
        {
            return;
        }

        InitialReceiveSequence = segment.SequenceNumber;
        ReceiveNext = segment.SequenceNumber + 1;
        ApplySynOptions(segment.Options);
        if (ackAcceptable)
        {
            SendUnacknowledged = ack;
            UpdateSendWindow(segment.SequenceNumber, ack, segment.Window, isSyn: true);
            TakeRttSampleForSyn(segment.Options);
            Establish();
            _ackNow = true;
            _layer.MarkForOutput(this);
            if (segment.Payload.Length > 0)
            {
                ReceiveText(segment.SequenceNumber + 1, segment.Payload, (flags & TcpFlags.Fin) != 0);
            }

            return;
        }

        // Simultaneous open (§3.5 figure 8): answer with SYN-ACK for our own ISS.
        State = TcpState.SynReceived;
        UpdateSendWindow(segment.SequenceNumber, InitialSendSequence, segment.Window, isSyn: true);
        RetransmitSyn();
    }

    /// <summary>§3.10.7.4 segment acceptability test.</summary>
    private bool IsAcceptable(uint seq, int segLen)
    {
        var window = (uint)_receive.Window;
        if (segLen == 0)
        {
            return window == 0 ? seq == ReceiveNext : SequenceNumber.InWindow(seq, ReceiveNext, ReceiveNext + window);
        }

        if (window == 0)
        {
            return false;
        }

        var last = seq + (uint)segLen - 1;
        return SequenceNumber.InWindow(seq, ReceiveNext, ReceiveNext + window) || SequenceNumber.InWindow(last, ReceiveNext, ReceiveNext + window);
    }

    private void OnResetReceived()
    {
        switch (State)
        {
            case TcpState.SynReceived when Listener is not null:
                // §3.10.7.4: a passively opened connection returns to LISTEN; ours was never handed out, so it just goes.
                Terminate(new TcpConnectionException(TcpError.Reset, $"Connection {Id} was reset during the handshake."));
                return;
            case TcpState.SynReceived:
                // §3.10.7.4 second check, SYN-RECEIVED: a connection initiated with an active OPEN (a simultaneous
                // open that came from SYN-SENT) was refused; tell the connecting application so.
                Terminate(new TcpConnectionException(TcpError.Refused, $"Connection to {Id.RemoteAddress}:{Id.RemotePort} was refused (RST)."));
                return;
            case TcpState.Closing:
            case TcpState.LastAck:
            case TcpState.TimeWait:
                Terminate(null);
                return;
            default:
                _receive.Clear();
                Terminate(new TcpConnectionException(TcpError.Reset, $"Connection {Id} was reset by the peer."));
                return;
        }
    }

    /// <summary>§3.10.7.4 fifth check (ACK field). Returns false when the segment must be dropped.</summary>
    private bool ProcessAck(uint ack, uint seq, ushort rawWindow, bool pureAck, in TcpOptions options)
    {
        if (State == TcpState.SynReceived)
        {
            if (SequenceNumber.Le(ack, SendUnacknowledged) || SequenceNumber.Gt(ack, SendMax))
            {
                _layer.SendResetFor(Id, ack, 0, TcpFlags.Rst);
                return false;
            }

            UpdateSendWindow(seq, ack, rawWindow, isSyn: false);
            TakeRttSampleForSyn(options);
            Establish();
        }

        if (SequenceNumber.Gt(ack, SendMax))
        {
            // Acknowledges something not yet sent: ACK and drop (§3.10.7.4).
            SendAck();
            return false;
        }

        var newlyAcked = SequenceNumber.Gt(ack, SendUnacknowledged) ? (long)(uint)(ack - SendUnacknowledged) : 0;
        var windowBefore = _sendWindow;
        var window = (uint)rawWindow << _sendWindowShift;

        // SACK (RFC 2018) and D-SACK (RFC 2883) onto the scoreboard, then the cumulative ACK.
        var delivery = new DeliveryInfo();
        if (_sackPermitted && options.SackBlockCount > 0)
        {
            ProcessSackBlocks(ack, options, ref delivery);
        }

        if (newlyAcked > 0)
        {
            _scoreboard.OnCumulativeAck(ack, ref delivery.NewestSentAt, ref delivery.NewestEnd, ref delivery.NewestWasRetransmitted);
        }

        // RFC 5681 §2 duplicate ACK; with SACK, an ACK that SACKs new data counts too (RFC 6675 §2).
        var isDuplicate = newlyAcked == 0 && ack == SendUnacknowledged && SendMax != SendUnacknowledged
            && ((pureAck && window == windowBefore) || delivery.Sacked > 0);

        if (newlyAcked > 0)
        {
            OnNewDataAcknowledged(ack, newlyAcked, options, delivery);
        }

        if (SequenceNumber.Ge(ack, SendUnacknowledged))
        {
            UpdateSendWindow(seq, ack, rawWindow, isSyn: false);
        }

        if (isDuplicate)
        {
            Statistics.DuplicateAcksReceived++;
        }

        if (newlyAcked > 0 || isDuplicate || delivery.DsackBytes > 0)
        {
            _recovery.OnAck(new AckEvent(ack, newlyAcked, isDuplicate, delivery.Sacked, delivery.DsackBytes, delivery.DsackCoversRetransmission, delivery.NewestSentAt, delivery.NewestEnd, delivery.NewestWasRetransmitted));
        }

        if (!_send.IsEmpty || _finQueued)
        {
            _layer.MarkForOutput(this);
        }

        if (_finSent && SequenceNumber.Gt(ack, _finSequence))
        {
            OnFinAcknowledged();
        }

        return State != TcpState.Closed;
    }

    /// <summary>
    /// Marks SACKed segments and recognises a D-SACK (RFC 2883 §4): a first block below the cumulative ACK,
    /// or inside the second block, reports a duplicate arrival, not new data.
    /// </summary>
    private void ProcessSackBlocks(uint ack, in TcpOptions options, ref DeliveryInfo delivery)
    {
        for (var i = 0; i < options.SackBlockCount; i++)
        {
            var block = options.GetSackBlock(i);
            if (!SequenceNumber.Lt(block.Left, block.Right) || SequenceNumber.Gt(block.Right, SendMax))
            {
                continue; // Malformed or beyond what we sent: ignore the block (RFC 2018 §5 leaves it to us).
            }

            if (i == 0 && (SequenceNumber.Le(block.Right, ack)
                || (options.SackBlockCount > 1 && SequenceNumber.Ge(block.Left, options.GetSackBlock(1).Left) && SequenceNumber.Le(block.Right, options.GetSackBlock(1).Right))))
            {
                delivery.DsackBytes = (uint)(block.Right - block.Left);
                delivery.DsackCoversRetransmission = _lastRetransmissionEnd != 0
                    && SequenceNumber.Lt(block.Left, _lastRetransmissionEnd) && SequenceNumber.Ge(block.Left, InitialSendSequence);
                continue;
            }

            if (SequenceNumber.Le(block.Right, ack))
            {
                continue;
            }

            delivery.Sacked += _scoreboard.OnSackBlock(SequenceNumber.Max(block.Left, ack), block.Right, ref delivery.NewestSentAt, ref delivery.NewestEnd, ref delivery.NewestWasRetransmitted);
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

    private void OnNewDataAcknowledged(uint ack, long newlyAcked, in TcpOptions options, in DeliveryInfo delivery)
    {
        var now = NowMicroseconds;
        var rttSample = -1L;

        // RFC 3522 Eifel detection: the first ACK after a timeout echoes a timestamp older than the
        // retransmission's: the original arrived, the timeout was spurious.
        if (_timeoutTsVal != 0 && _timestamps && options.HasTimestamp)
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
        else if (_timestamps && options.HasTimestamp && options.TsEcr != 0)
        {
            rttSample = Math.Max(0, ((long)(uint)(TimestampNow(now) - options.TsEcr)) * 1000);
        }
        else if (_rttTiming && SequenceNumber.Gt(ack, _rttSequence))
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
        if (SequenceNumber.Lt(SendNext, ack))
        {
            SendNext = ack;
        }

        _send.Acknowledge(ack, _host!);
        _keepaliveProbesSent = 0;

        if (!_recovery.InRecovery)
        {
            var appLimited = SequenceNumber.Ge(SendNext, _send.EndSequence) && !_finQueued;
            _congestion.OnAck(new AckSample(newlyAcked, BytesInFlight, rttSample, now, appLimited, ack, SendMax));
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
    private void UpdateSendWindow(uint seq, uint ack, ushort rawWindow, bool isSyn)
    {
        if (isSyn || SequenceNumber.Lt(_sendWl1, seq) || (_sendWl1 == seq && SequenceNumber.Le(_sendWl2, ack)))
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

    private void Establish()
    {
        State = TcpState.Established;
        _congestion.Initialize(MaxSegmentSize, NowMicroseconds);
        _retransmitDeadline = 0;
        _retransmissionsOfHead = 0;
        _rtt.ResetBackoff();
        SendUnacknowledged = SequenceNumber.Max(SendUnacknowledged, InitialSendSequence + 1);
        ArmKeepalive(NowMicroseconds);
        if (Listener is not null)
        {
            _layer.OnPassiveEstablished(this);
        }
        else
        {
            _layer.OnActiveEstablished(this);
            Observer?.OnEstablished(this);
        }

        if (_finQueued || !_send.IsEmpty)
        {
            _layer.MarkForOutput(this);
        }
    }

    private void TakeRttSampleForSyn(in TcpOptions options)
    {
        // The SYN's RTT is a valid first sample unless it was retransmitted (Karn).
        if (_rttTiming)
        {
            _rtt.AddSample(NowMicroseconds - _rttSentAt);
            _rttTiming = false;
        }
        else if (_timestamps && options.HasTimestamp && options.TsEcr != 0)
        {
            _rtt.AddSample(((long)(uint)(TimestampNow(NowMicroseconds) - options.TsEcr)) * 1000);
        }
    }

    private void ReceiveText(uint seq, ReadOnlySpan<byte> payload, bool fin)
    {
        // Trim what we already have (left of RCV.NXT) and what lies beyond the window.
        var skip = SequenceNumber.Diff(ReceiveNext, seq);
        if (skip > 0)
        {
            // RFC 2883 §4 (1): report the duplicate in the first SACK block of the ACK it triggers.
            NoteDuplicate(seq, seq + (uint)Math.Min(skip, payload.Length));
            if (skip >= payload.Length)
            {
                _ackNow = true;
                _layer.MarkForOutput(this);
                if (fin)
                {
                    NoteFin(seq + (uint)payload.Length);
                }

                return;
            }

            payload = payload[skip..];
            seq += (uint)skip;
        }

        var room = _receive.Window - SequenceNumber.Diff(seq, ReceiveNext);
        if (payload.Length > room)
        {
            payload = payload[..Math.Max(0, room)];
            fin = false;
        }

        var inOrder = seq == ReceiveNext;
        var hadRanges = _receive.RangeCount > 0;
        if (!inOrder && _receive.Holds(seq, seq + (uint)payload.Length))
        {
            // RFC 2883 §4 (2): an out-of-order segment we already hold: D-SACK it, nothing new to place.
            NoteDuplicate(seq, seq + (uint)payload.Length);
            SendAck();
            return;
        }

        var advance = _receive.Write(ReceiveNext, seq, payload);
        if (advance < 0)
        {
            Statistics.DroppedSegments++;
            _ackNow = true;
            _layer.MarkForOutput(this);
            return;
        }

        _lastReceivedSequence = seq;
        ReceiveNext += (uint)advance;
        Statistics.BytesReceived += advance;
        if (!inOrder)
        {
            // RFC 5681 §4.2: an out-of-order segment is acknowledged at once, one ACK per segment even when
            // several arrive in one batch: the sender counts these duplicate ACKs to detect the loss.
            Statistics.OutOfOrderSegments++;
            SendAck();
        }
        else if (hadRanges)
        {
            // A segment that fills a hole is acknowledged at once too.
            _ackNow = true;
        }
        else
        {
            ScheduleDelayedAck(payload.Length);
        }

        _layer.MarkForOutput(this);

        if (fin)
        {
            NoteFin(seq + (uint)payload.Length);
        }

        if (advance > 0)
        {
            Observer?.OnReadable(this);
        }
    }

    private uint _lastReceivedSequence;
    private uint _dsackStart;
    private uint _dsackEnd;

    private void NoteDuplicate(uint start, uint end)
    {
        if (_sackPermitted && SequenceNumber.Lt(start, end))
        {
            _dsackStart = start;
            _dsackEnd = end;
        }
    }

    private void NoteFin(uint finSequence)
    {
        if (_finReceived)
        {
            return;
        }

        if (finSequence == ReceiveNext)
        {
            ProcessFin();
        }
        else if (SequenceNumber.Gt(finSequence, ReceiveNext))
        {
            _outOfOrderFin = finSequence;
            _hasOutOfOrderFin = true;
        }
    }

    /// <summary>§3.10.7.4 eighth check: the FIN bit, in order.</summary>
    private void ProcessFin()
    {
        _finReceived = true;
        ReceiveNext++;
        _ackNow = true;
        _layer.MarkForOutput(this);
        switch (State)
        {
            case TcpState.SynReceived:
            case TcpState.Established:
                State = TcpState.CloseWait;
                break;
            case TcpState.FinWait1:
                // Simultaneous close (§3.6 figure 13): our FIN is not yet acknowledged.
                State = TcpState.Closing;
                break;
            case TcpState.FinWait2:
                StartTimeWait();
                break;
        }

        Observer?.OnReadable(this);
    }

    private void OnFinAcknowledged()
    {
        switch (State)
        {
            case TcpState.FinWait1:
                State = TcpState.FinWait2;
                break;
            case TcpState.Closing:
                StartTimeWait();
                break;
            case TcpState.LastAck:
                Terminate(null);
                break;
        }
    }
}
