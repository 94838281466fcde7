using Vso.Transport.Engine;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>SEGMENT ARRIVES, RFC 9293 §3.10.7.3 and §3.10.7.4.</summary>
internal sealed partial class TcpConnection
{
    /// <summary>RFC 5961 §7: this connection's limit on challenge ACKs. Mutable struct: never copied.</summary>
    private TokenBucket _challengeAckLimit;

    /// <summary>Linux's tcp_invalid_ratelimit: this connection's limit on ACKs to unacceptable pure ACKs and SYNs. Never copied.</summary>
    private TokenBucket _invalidSegmentAckLimit;

    /// <summary>The limits on replies that input alone causes start full when the connection is created.</summary>
    private void InitializeReplyLimits(long nowMicroseconds)
    {
        if (_settings.ChallengeAckInterval > TimeSpan.Zero)
        {
            _challengeAckLimit = TokenBucket.OnePer(Micros(_settings.ChallengeAckInterval), nowMicroseconds);
        }

        if (_settings.InvalidSegmentAckInterval > TimeSpan.Zero)
        {
            _invalidSegmentAckLimit = TokenBucket.OnePer(Micros(_settings.InvalidSegmentAckInterval), nowMicroseconds);
        }
    }

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
        var seq = new SeqNum(segment.SequenceNumber);
        var ack = new SeqNum(segment.AcknowledgmentNumber);
        var payload = segment.Payload;
        var options = segment.Options;
        var segLen = payload.Length + ((flags & TcpFlags.Syn) != 0 ? 1 : 0) + ((flags & TcpFlags.Fin) != 0 ? 1 : 0);

        // RFC 7323 §5.3 R1: PAWS drops segments whose timestamp is older than TS.Recent, except a reordered
        // pure duplicate ACK (Linux's tcp_disordered_ack): it cannot be an old duplicate from an earlier
        // incarnation that does harm, and its SACK blocks are news loss recovery needs.
        if (_timestamps && options.HasTimestamp && (flags & TcpFlags.Rst) == 0 && SequenceNumber.Lt(options.TsVal, _tsRecent)
            && !IsDisorderedAck(flags, seq, payload.Length, ack, segment.Window))
        {
            Statistics.DroppedSegments++;
            SendInvalidSegmentAck(flags, segLen);
            return;
        }

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost, send it again.
        if (State == TcpState.SynReceived && (flags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn && seq == _receiver.InitialSequence)
        {
            RetransmitSyn();
            return;
        }

        // RFC 9293 §3.5 figure 8, line 6: in a simultaneous open the peer's SYN-ACK repeats its SYN (SEG.SEQ = IRS,
        // left of RCV.NXT, so the acceptability test below would drop it) and acknowledges ours; it completes the
        // handshake (as in Linux's tcp_validate_incoming). The SYN's window is never scaled (RFC 7323 §2.2).
        if (State == TcpState.SynReceived && Listener is null && (flags & (TcpFlags.Syn | TcpFlags.Ack | TcpFlags.Rst)) == (TcpFlags.Syn | TcpFlags.Ack)
            && seq == _receiver.InitialSequence && ack == _sender.SendNext && payload.Length == 0)
        {
            _sender.UpdateSendWindow(seq, ack, segment.Window, isSyn: true);
            _sender.TakeRttSampleForSyn(options);
            Establish();
            return;
        }

        // First check: is the sequence number acceptable (§3.10.7.4, the four cases)?
        if (!IsAcceptable(seq, segLen))
        {
            Statistics.DroppedSegments++;
            if ((flags & TcpFlags.Rst) == 0)
            {
                if (payload.Length > 0 && seq + payload.Length <= _receiver.Next)
                {
                    // An old duplicate: tell the sender with a D-SACK (RFC 2883 §4 (1)), its retransmission was spurious.
                    _receiver.NoteDuplicate(seq, seq + payload.Length);
                }

                SendInvalidSegmentAck(flags, segLen);
            }

            return;
        }

        // Second check: RST, with RFC 5961 §3.2's blind-reset defence that RFC 9293 recommends: out of the window it
        // was dropped above, in the window but not at RCV.NXT it gets a challenge ACK, only an exact match resets.
        if ((flags & TcpFlags.Rst) != 0)
        {
            if (seq != _receiver.Next)
            {
                SendChallengeAck();
                return;
            }

            OnResetReceived();
            return;
        }

        // Fourth check: a SYN in a synchronized state gets a challenge ACK (RFC 5961 §4.2, RFC 9293 §3.10.7.4).
        if ((flags & TcpFlags.Syn) != 0)
        {
            SendChallengeAck();
            return;
        }

        // Fifth check: segments without ACK are dropped.
        if ((flags & TcpFlags.Ack) == 0)
        {
            return;
        }

        // Fifth check, first the ACK's acceptability (RFC 9293 §3.10.7.4, RFC 5961 §5.2): a segment whose ACK
        // acknowledges unsent data or is older than any the peer could still send is answered and dropped, its
        // text never reaches the application.
        if (!IsAckAcceptable(ack))
        {
            Statistics.DroppedSegments++;
            return;
        }

        // RFC 7323 §4.3 (3), §5.3 R3: remember the timestamp of an acceptable segment that covers Last.ACK.sent; only
        // now, once its ACK passed too, so that one forged segment cannot move TS.Recent ahead and make every
        // later segment of the peer fail PAWS.
        if (_timestamps && options.HasTimestamp && seq <= _lastAckSent && SequenceNumber.Ge(options.TsVal, _tsRecent))
        {
            _tsRecent = options.TsVal;
        }

        if (!ProcessAck(ack, seq, segment.Window, payload.Length == 0 && (flags & TcpFlags.Fin) == 0, options))
        {
            return;
        }

        if (State == TcpState.Closed)
        {
            return;
        }

        // Seventh: segment text, in the states that still receive.
        if (IsReceiveShutdown && payload.Length > 0 && seq + payload.Length > _receiver.Next && State is TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2)
        {
            OnDataAfterReceiveShutdown();
            return;
        }

        if (payload.Length > 0 && State is TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2)
        {
            _receiver.ReceiveText(seq, payload, (flags & TcpFlags.Fin) != 0);
        }
        else if ((flags & TcpFlags.Fin) != 0 && State is TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2)
        {
            _receiver.ReceiveFin(seq);
        }

        _receiver.ProcessPendingFin();
    }

    /// <summary>A pure ACK at RCV.NXT that acknowledges nothing new and does not change the window.</summary>
    private bool IsDisorderedAck(TcpFlags flags, SeqNum seq, int payloadLength, SeqNum ack, ushort rawWindow) =>
        (flags & (TcpFlags.Syn | TcpFlags.Fin | TcpFlags.Rst | TcpFlags.Ack)) == TcpFlags.Ack
        && payloadLength == 0
        && seq == _receiver.Next
        && _sender.IsUnchangedAck(ack, rawWindow);

    private void OnSegmentInSynSent(in TcpSegment segment)
    {
        var flags = segment.Flags;
        var seq = new SeqNum(segment.SequenceNumber);
        var ack = new SeqNum(segment.AcknowledgmentNumber);
        var ackAcceptable = false;
        if ((flags & TcpFlags.Ack) != 0)
        {
            // §3.10.7.3 first check: an ACK outside (ISS, SND.NXT] gets a reset unless it is one.
            if (ack <= _sender.InitialSendSequence || ack > _sender.SendNext)
            {
                if ((flags & TcpFlags.Rst) == 0)
                {
                    _layer.SendResetFor(Id, ack.Value, 0, TcpFlags.Rst);
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

        _receiver.OnSyn(seq);
        ApplySynOptions(segment.Options);
        if (ackAcceptable)
        {
            _sender.OnSynAcknowledged(ack);
            _sender.UpdateSendWindow(seq, ack, segment.Window, isSyn: true);
            _sender.TakeRttSampleForSyn(segment.Options);
            Establish();
            _receiver.RequestAck();
            if (segment.Payload.Length > 0)
            {
                _receiver.ReceiveText(seq + 1, segment.Payload, (flags & TcpFlags.Fin) != 0);
            }

            return;
        }

        // Simultaneous open (§3.5 figure 8): answer with SYN-ACK for our own ISS.
        State = TcpState.SynReceived;
        _sender.UpdateSendWindow(seq, _sender.InitialSendSequence, segment.Window, isSyn: true);
        RetransmitSyn();
    }

    /// <summary>
    /// §3.10.7.4 segment acceptability test, against RCV.WND as advertised (the right edge offered to the peer), not
    /// the free buffer: without window scaling the peer was offered at most 65,535 bytes (RFC 7323 §2.2-2.3), and
    /// what lies beyond the offer is no segment of a legitimate peer (nor an in-window RST or SYN, RFC 5961 §3.2).
    /// </summary>
    private bool IsAcceptable(SeqNum seq, int segLen)
    {
        var window = (uint)_receiver.AdvertisedWindow;
        if (segLen == 0)
        {
            return window == 0 ? seq == _receiver.Next : seq.InWindow(_receiver.Next, _receiver.Next + window);
        }

        if (window == 0)
        {
            return false;
        }

        var last = seq + (segLen - 1);
        return seq.InWindow(_receiver.Next, _receiver.Next + window) || last.InWindow(_receiver.Next, _receiver.Next + window);
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
                _receiver.Clear();
                Terminate(new TcpConnectionException(TcpError.Reset, $"Connection {Id} was reset by the peer."));
                return;
        }
    }

    /// <summary>
    /// §3.10.7.4 fifth check, whether SEG.ACK is acceptable; answers it when not. SYN-RECEIVED: outside
    /// (SND.UNA, SND.NXT] it gets a reset. Synchronized states: RFC 5961 §5.2, acceptable only in
    /// [SND.UNA - MAX.SND.WND, SND.NXT]; beyond SND.NXT RFC 9293 says send an ACK, below the range RFC 5961 a
    /// challenge ACK: both are the same ACK, throttled alike (§7).
    /// </summary>
    private bool IsAckAcceptable(SeqNum ack)
    {
        if (State == TcpState.SynReceived)
        {
            if (ack <= _sender.SendUnacknowledged || ack > _sender.SendMax)
            {
                _layer.SendResetFor(Id, ack.Value, 0, TcpFlags.Rst);
                return false;
            }

            return true;
        }

        if (_sender.ClassifyAck(ack) == AckAcceptability.Acceptable)
        {
            return true;
        }

        SendChallengeAck();
        return false;
    }

    /// <summary>
    /// A challenge ACK (RFC 5961 §3.2, §4.2, §5.2), throttled as §7 asks: first by this connection's limit, so that
    /// one connection cannot spend the stack's budget, then by the stack's randomised one (a stack-wide budget
    /// alone is the side channel of CVE-2016-5696; per connection it is not shared).
    /// </summary>
    private void SendChallengeAck()
    {
        var now = NowMicroseconds;
        if (_settings.ChallengeAckInterval > TimeSpan.Zero && !_challengeAckLimit.TryTake(now))
        {
            Statistics.ChallengeAcksSuppressed++;
            _layer.Metrics.ChallengeAcksSuppressedByConnection.Add(1);
            return;
        }

        if (!_layer.TryTakeChallengeAck(now))
        {
            Statistics.ChallengeAcksSuppressed++;
            return;
        }

        Statistics.ChallengeAcksSent++;
        _layer.Metrics.ChallengeAcksSent.Add(1);
        SendAck();
    }

    /// <summary>
    /// The ACK an unacceptable segment gets (RFC 9293 §3.10.7.4 first check, RFC 7323 §5.3 R1). One that occupies no
    /// sequence space, or carries a SYN, is answered at most once per <see cref="TcpSettings.InvalidSegmentAckInterval"/>
    /// (Linux's tcp_invalid_ratelimit): two endpoints that disagree about the connection would otherwise ACK each
    /// other's ACKs forever. One carrying data or FIN is always answered, as Linux does: it is not part of such a
    /// loop, and its ACK (with a D-SACK) is how a peer whose ACK was lost learns what arrived.
    /// </summary>
    private void SendInvalidSegmentAck(TcpFlags flags, int segLen)
    {
        if ((segLen > 0 && (flags & TcpFlags.Syn) == 0)
            || _settings.InvalidSegmentAckInterval == TimeSpan.Zero
            || _invalidSegmentAckLimit.TryTake(NowMicroseconds))
        {
            SendAck();
            return;
        }

        Statistics.InvalidSegmentAcksSuppressed++;
        _layer.Metrics.InvalidSegmentAcksSuppressed.Add(1);
    }

    /// <summary>§3.10.7.4 fifth check (ACK field) for an ACK found acceptable. Returns false when the segment must be dropped.</summary>
    private bool ProcessAck(SeqNum ack, SeqNum seq, ushort rawWindow, bool pureAck, in TcpOptions options)
    {
        if (State == TcpState.SynReceived)
        {
            // The accept queue is full: drop the ACK and stay half-open, the peer retransmits it (Linux's listen overflow).
            if (Listener is { IsAcceptQueueFull: true } listener)
            {
                _layer.OnAcceptQueueOverflow(listener);
                return false;
            }

            _sender.UpdateSendWindow(seq, ack, rawWindow, isSyn: false);
            _sender.TakeRttSampleForSyn(options);
            Establish();
        }

        if (!_sender.ProcessAck(ack, seq, rawWindow, pureAck, options))
        {
            return false;
        }

        if (_sender.IsFinAcknowledgedBy(ack))
        {
            OnFinAcknowledged();
        }

        return State != TcpState.Closed;
    }

    private void Establish()
    {
        State = TcpState.Established;
        _sender.OnEstablished();
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

        if (_sender.HasPendingOutput)
        {
            _layer.MarkForOutput(this);
        }
    }

    /// <summary>§3.10.7.4 eighth check, after the receiver took the FIN in order: the state moves on.</summary>
    internal void OnFinReceived()
    {
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
                OnFinAcknowledgedForLinger();
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
