using Vso.MemoryPinning;
using Vso.Transport.Engine;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>Building segments: data through the host by descriptor, SYN, FIN, ACK and RST.</summary>
internal sealed partial class TcpConnection
{
    private bool _ackNow;

    /// <summary>End of the last sub-MSS segment sent (Minshall's snd_sml); starts at the ISS, so none is outstanding.</summary>
    private uint _smallSegmentEnd;

    /// <summary>A small segment is sent and not yet acknowledged (bounded by SND.MAX, so an old mark cannot wrap).</summary>
    private bool SmallSegmentOutstanding =>
        SequenceNumber.Gt(_smallSegmentEnd, SendUnacknowledged) && SequenceNumber.Le(_smallSegmentEnd, SendMax);

    /// <summary>Sends what the windows, Nagle and the state allow, then an ACK if one is still owed.</summary>
    public void Output()
    {
        if (State is TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck)
        {
            OutputData();
        }

        if (_ackNow && State is not (TcpState.Closed or TcpState.Listen or TcpState.SynSent))
        {
            SendAck();
        }
    }

    private void OutputData()
    {
        while (true)
        {
            var dataEnd = _send.EndSequence;
            var available = Math.Max(0, SequenceNumber.Diff(dataEnd, SendNext));
            var finDue = _finQueued && available == 0 && SendNext == dataEnd && State is TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck
                && (!_finSent || SequenceNumber.Le(SendNext, _finSequence));
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
            if (State == TcpState.Closed)
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

            var segmentSize = PayloadLimit();
            var length = (int)Math.Min(Math.Min(available, segmentSize), Math.Max(0, usable));
            if (length > 0 && IdentifyMode == IdentifyMode.Pinned)
            {
                length = _send.ClampToPieces(SendNext, length, _layer.Ip.MaxGatherPieces);
            }

            var gsoSize = 0;
            if (length == segmentSize && IdentifyMode == IdentifyMode.Pinned && _layer.MaxOffloadPayload > 0
                && SequenceNumber.Ge(SendNext, SendMax))
            {
                // Segmentation offload: several full segments of new data as one super-segment that the link has cut
                // (the same segments, headers and options as one by one, for one message and one pass through the
                // kernel's device layer). The scoreboard and loss recovery still see each segment (NoteSegments).
                var room = Math.Min(Math.Min(available, usable), _layer.MaxOffloadPayload);
                var total = (int)(room / segmentSize * segmentSize);
                if (total >= 2 * segmentSize)
                {
                    total = _send.ClampToPieces(SendNext, total, _layer.Ip.MaxGatherPieces) / segmentSize * segmentSize;
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
                if ((_settings.Nagle && SmallSegmentOutstanding && !(isLast && _finQueued)) || (!isLast && length < _maxSendWindow / 2))
                {
                    // The second test is sender-side SWS avoidance (§3.8.6.2.1): do not dribble into a small window.
                    break;
                }
            }

            var flags = TcpFlags.Ack;
            if (length > 0 && length == available)
            {
                flags |= TcpFlags.Psh;
            }

            if (_finQueued && SendNext + (uint)length == dataEnd)
            {
                flags |= TcpFlags.Fin;
            }

            var isRetransmission = SequenceNumber.Lt(SendNext, SendMax);
            if (!Emit(SendNext, flags, length, isRetransmission, gsoSize))
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
                _smallSegmentEnd = SendNext + (uint)length;
            }

            SendNext += (uint)length;
            if ((flags & TcpFlags.Fin) != 0)
            {
                OnFinSent(SendNext);
                SendNext++;
            }

            SendMax = SequenceNumber.Max(SendMax, SendNext);
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

    private void OnFinSent(uint finSequence)
    {
        if (_finSent)
        {
            return;
        }

        _finSent = true;
        _finSequence = finSequence;
        State = State switch
        {
            TcpState.Established => TcpState.FinWait1,
            TcpState.CloseWait => TcpState.LastAck,
            _ => State,
        };
    }

    /// <summary>Resends one segment from <paramref name="sequence"/> through the host (loss recovery's only way to resend).</summary>
    public int Retransmit(uint sequence, int maxBytes)
    {
        if (SequenceNumber.Lt(sequence, SendUnacknowledged) || !SequenceNumber.Lt(sequence, SendMax))
        {
            return 0;
        }

        if (State is TcpState.SynSent or TcpState.SynReceived)
        {
            RetransmitSyn();
            return 0;
        }

        // A retransmission never reaches past what was sent before (SND.MAX): re-segmenting with fewer
        // option bytes could otherwise send new data the peer may acknowledge beyond SND.MAX.
        var sentDataEnd = SequenceNumber.Min(_send.EndSequence, SendMax);
        var length = Math.Max(0, Math.Min(Math.Min(maxBytes, PayloadLimit()), SequenceNumber.Diff(sentDataEnd, sequence)));
        if (length > 0 && IdentifyMode == IdentifyMode.Pinned)
        {
            length = _send.ClampToPieces(sequence, length, _layer.Ip.MaxGatherPieces);
        }

        var flags = TcpFlags.Ack;
        if (_finSent && sequence + (uint)length == _finSequence)
        {
            flags |= TcpFlags.Fin;
        }

        if (length == 0 && (flags & TcpFlags.Fin) == 0)
        {
            return 0;
        }

        if (!Emit(sequence, flags, length, isRetransmission: true))
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

    /// <summary>Sends one segment of new data, if queued and the peer's window allows (a tail loss probe). Returns bytes sent.</summary>
    public int SendNewSegment()
    {
        var available = SequenceNumber.Diff(_send.EndSequence, SendNext);
        var peerUsable = (long)_sendWindow - (long)(uint)(SendNext - SendUnacknowledged);
        if (available <= 0 || peerUsable <= 0 || !SequenceNumber.Ge(SendNext, SendMax)
            || State is not (TcpState.Established or TcpState.CloseWait))
        {
            return 0;
        }

        var length = (int)Math.Min(Math.Min(available, PayloadLimit()), peerUsable);
        if (IdentifyMode == IdentifyMode.Pinned)
        {
            length = _send.ClampToPieces(SendNext, length, _layer.Ip.MaxGatherPieces);
        }

        var flags = TcpFlags.Ack | (length == available ? TcpFlags.Psh : TcpFlags.None);
        if (!Emit(SendNext, flags, length, isRetransmission: false))
        {
            return 0;
        }

        NoteTransmitted(SendNext, length, isRetransmission: false);
        SendNext += (uint)length;
        SendMax = SequenceNumber.Max(SendMax, SendNext);
        if (_retransmitDeadline == 0)
        {
            ArmRetransmitTimer(NowMicroseconds);
        }

        return length;
    }

    /// <summary>The segments of a super-segment of new data, one by one, as the link cut it (FIN on the last).</summary>
    private void NoteSegments(uint sequence, int length, int segmentSize, bool fin)
    {
        var now = NowMicroseconds; // one clock read for the whole super-segment: its segments leave together
        for (var offset = 0; offset < length; offset += segmentSize)
        {
            var n = Math.Min(segmentSize, length - offset);
            var last = offset + n == length;
            NoteTransmitted(sequence + (uint)offset, n + (last && fin ? 1 : 0), isRetransmission: false, now);
        }
    }

    /// <summary>Every data segment (and FIN) that left: the scoreboard and loss recovery learn of it.</summary>
    private void NoteTransmitted(uint sequence, int sequenceLength, bool isRetransmission) =>
        NoteTransmitted(sequence, sequenceLength, isRetransmission, NowMicroseconds);

    private void NoteTransmitted(uint sequence, int sequenceLength, bool isRetransmission, long now)
    {
        if (sequenceLength == 0)
        {
            return;
        }

        if (isRetransmission)
        {
            _scoreboard.OnRetransmit(sequence, sequence + (uint)sequenceLength, now);
            // 0 means "none yet"; a serial-number Max against 0 (RFC 1982) keeps 0 whenever the sequence lies in the upper
            // half of the space, and then no D-SACK was ever credited to a retransmission (RFC 3708 undo never ran).
            var end = sequence + (uint)sequenceLength;
            _lastRetransmissionEnd = _lastRetransmissionEnd == 0 ? end : SequenceNumber.Max(_lastRetransmissionEnd, end);
        }
        else
        {
            _scoreboard.OnTransmit(sequence, sequence + (uint)sequenceLength, now);
        }

        _recovery.OnTransmitted(sequence, sequenceLength, isRetransmission);
    }

    /// <summary>End of the highest range ever retransmitted (to tell whether a D-SACK covers a retransmission).</summary>
    private uint _lastRetransmissionEnd;

    /// <summary>The next new transmission starts again at <paramref name="sequence"/> (go-back-N after a timeout).</summary>
    public void RewindSendNext(uint sequence)
    {
        if (SequenceNumber.Ge(sequence, SendUnacknowledged) && SequenceNumber.Lt(sequence, SendNext))
        {
            SendNext = sequence;
            _rttTiming = false;
            _layer.MarkForOutput(this);
        }
    }

    private void SendSyn()
    {
        SendNext = InitialSendSequence + 1;
        SendMax = SendNext;
        if (Emit(InitialSendSequence, State == TcpState.SynSent ? TcpFlags.Syn : TcpFlags.Syn | TcpFlags.Ack, 0, isRetransmission: false))
        {
            _rttTiming = true;
            _rttSequence = InitialSendSequence;
            _rttSentAt = NowMicroseconds;
        }

        ArmRetransmitTimer(NowMicroseconds);
    }

    private void RetransmitSyn()
    {
        _rttTiming = false;
        Emit(InitialSendSequence, State == TcpState.SynSent ? TcpFlags.Syn : TcpFlags.Syn | TcpFlags.Ack, 0, isRetransmission: true);
        if (_retransmitDeadline == 0)
        {
            ArmRetransmitTimer(NowMicroseconds);
        }
    }

    /// <summary>
    /// A pure ACK carries SND.MAX, not SND.NXT: after a timeout rewinds SND.NXT (go-back-N) the peer's
    /// RCV.NXT may already lie beyond it, and an ACK below RCV.NXT fails the peer's acceptability test
    /// and is dropped, which would lose the acknowledgment it carries (BSD does the same).
    /// </summary>
    private void SendAck() => Emit(SendMax, TcpFlags.Ack, 0, isRetransmission: false);

    private void SendReset(uint sequence) => Emit(sequence, TcpFlags.Rst | TcpFlags.Ack, 0, isRetransmission: false);

    /// <summary>
    /// Builds one segment and sends it through the IP output port. The payload comes from the host by descriptor:
    /// copied into the datagram (Copy) or leased and gathered (Pinned). Returns false if it could not be sent.
    /// <paramref name="gsoSize"/> &gt; 0 (Pinned only): a super-segment of <paramref name="payloadLength"/> bytes that the
    /// link cuts into segments of that size; its checksum field holds the pseudo-header sum, the kernel finishes each.
    /// </summary>
    private bool Emit(uint sequence, TcpFlags flags, int payloadLength, bool isRetransmission, int gsoSize = 0)
    {
        var ip = _layer.Ip;
        if (!ip.TryBegin(Id.RemoteAddress, IpProtocol.Tcp))
        {
            _emitBlocked = true;

            // The path waits for ARP. If the request or its reply is lost, only a retry asks again; with nothing in
            // flight no timer would ever run, and the connection stalled for good. The retransmission timer retries.
            if (_retransmitDeadline == 0 && State is not (TcpState.Closed or TcpState.TimeWait))
            {
                ArmRetransmitTimer(NowMicroseconds);
            }

            return false;
        }

        var now = NowMicroseconds;
        var isSyn = (flags & TcpFlags.Syn) != 0;
        var windowBytes = (uint)_receive.Window;

        // RFC 7323 §2.2: the window field of a SYN is never scaled.
        var window = isSyn ? (ushort)Math.Min(windowBytes, ushort.MaxValue) : (ushort)Math.Min(windowBytes >> EffectiveReceiveShift, ushort.MaxValue);
        var header = new TcpRepr
        {
            SourcePort = Id.LocalPort,
            DestinationPort = Id.RemotePort,
            SequenceNumber = sequence,
            AcknowledgmentNumber = (flags & TcpFlags.Ack) != 0 ? ReceiveNext : 0,
            Flags = flags,
            Window = window,
            Options = BuildOptions(flags, now),
        };
        System.Diagnostics.Debug.Assert(
            gsoSize == 0 ? payloadLength <= _layer.MaxSegmentSize - header.Options.EncodedLength : gsoSize <= _layer.MaxSegmentSize - header.Options.EncodedLength,
            "segment exceeds the MTU");

        var tcp = ip.Append(header.HeaderLength);
        var headerLength = header.Emit(tcp);

        var sum = default(ChecksumAccumulator);
        if (payloadLength > 0)
        {
            if (!TryIdentifyPayload(sequence, payloadLength, ref sum, out var copied, sumPayload: gsoSize == 0))
            {
                ip.Cancel();
                return false;
            }

            if (gsoSize > 0)
            {
                Statistics.OffloadedSuperSegments++; // always new data (OutputData sends super-segments only beyond SND.MAX)
            }

            if (!isRetransmission)
            {
                Statistics.FirstTransmissionBytes += payloadLength;
                Statistics.FirstTransmissionCopiedBytes += copied;
            }
            else
            {
                Statistics.SegmentsRetransmitted++;
                Statistics.BytesRetransmitted += payloadLength;
                _layer.Metrics.RetransmittedSegments.Add(1);
            }
        }
        else if (isRetransmission)
        {
            Statistics.SegmentsRetransmitted++;
            _layer.Metrics.RetransmittedSegments.Add(1);
        }

        if (gsoSize > 0)
        {
            TcpChecksum.WritePseudoHeaderSum(tcp, Id.LocalAddress, Id.RemoteAddress, headerLength + payloadLength);
            ip.Commit(gsoSize);
            Statistics.SegmentsSent += (payloadLength + gsoSize - 1) / gsoSize;
        }
        else
        {
            TcpChecksum.Finish(tcp, headerLength, Id.LocalAddress, Id.RemoteAddress, payloadLength, sum);
            ip.Commit();
            Statistics.SegmentsSent++;
        }

        if ((flags & TcpFlags.Ack) != 0)
        {
            _lastAckSent = ReceiveNext;
            _ackNow = false;
            _delayedAckDeadline = 0;
            _segmentsSinceAck = 0;
            _advertisedRightEdge = ReceiveNext + ((uint)window << (isSyn ? 0 : EffectiveReceiveShift));
        }

        return true;
    }

    /// <summary>
    /// Asks the host for the payload bytes, descriptor by descriptor: copied into the datagram (Copy, summed as they go)
    /// or leased and gathered (Pinned, summed unless the kernel sums them). Only the host's documented refusal, a
    /// <see cref="StaleDescriptorException"/> (<see cref="ISendHost"/>), fails the connection here; any other exception
    /// is an engine bug and propagates to the engine's containment, not disguised as a refusal.
    /// </summary>
    private bool TryIdentifyPayload(uint sequence, int length, ref ChecksumAccumulator sum, out int copied, bool sumPayload = true)
    {
        copied = 0;
        var ip = _layer.Ip;
        var descriptor = _send.Locate(sequence, out var offset);
        var remaining = length;
        try
        {
            while (remaining > 0)
            {
                if (descriptor is null)
                {
                    throw new InvalidOperationException($"Send queue of {Id} has no descriptor for sequence {sequence + (uint)(length - remaining)}.");
                }

                var n = Math.Min(remaining, descriptor.Length - offset);
                if (IdentifyMode == IdentifyMode.Copy)
                {
                    var destination = ip.Append(n);
                    _host!.CopyTo(descriptor, offset, destination);
                    sum.Add(destination);
                    copied += n;
                }
                else
                {
                    var lease = _host!.Lease(descriptor, offset, n);
                    ip.AppendGathered(lease);
                    if (sumPayload)
                    {
                        sum.Add(lease.AsSpan());
                    }
                }

                remaining -= n;
                offset = 0;
                descriptor = descriptor.Next;
            }

            return true;
        }
        catch (StaleDescriptorException ex)
        {
            // The host refused to identify its own descriptor: the data cannot be delivered. Fail loudly.
            _layer.Log.HostRefusedDescriptor(Id.ToString(), ex.Message);
            _pendingFailure = new TcpConnectionException(TcpError.Aborted, $"Connection {Id} failed: the host refused a send descriptor ({ex.Message}).");
            _layer.MarkForOutput(this);
            return false;
        }
        catch
        {
            // An engine bug: abandon the half-built datagram (ending its leases) and let the engine's containment see it.
            ip.Cancel();
            throw;
        }
    }

    private TcpConnectionException? _pendingFailure;

    /// <summary>Applies a failure found while building a segment, once the batch is consistent again.</summary>
    public void ApplyPendingFailure()
    {
        if (_pendingFailure is { } failure)
        {
            _pendingFailure = null;
            SendReset(SendMax);
            Terminate(failure);
        }
    }

    private TcpOptions BuildOptions(TcpFlags flags, long now)
    {
        var options = TcpOptions.None;
        var isSyn = (flags & TcpFlags.Syn) != 0;
        if (isSyn)
        {
            options.Mss = (ushort)_layer.MaxSegmentSize;
            if (_windowScaling)
            {
                options.WindowScale = (sbyte)_receiveWindowShift;
            }

            options.SackPermitted = _sackPermitted;
        }

        if (_timestamps && (flags & TcpFlags.Rst) == 0)
        {
            // RFC 7323 §3.2: TSecr is zero in a SYN that does not acknowledge; it echoes TS.Recent otherwise.
            options.HasTimestamp = true;
            options.TsVal = TimestampNow(now);
            options.TsEcr = (flags & TcpFlags.Ack) != 0 ? _tsRecent : 0;
        }

        if (_sackPermitted && !isSyn && (_receive.RangeCount > 0 || _dsackEnd != _dsackStart))
        {
            AddSackBlocks(ref options);
        }

        return options;
    }

    /// <summary>
    /// Payload that fits one data segment now: the MSS less any options beyond the timestamps every segment
    /// carries (SACK blocks while we hold out-of-order data), so a frame never exceeds the MTU.
    /// </summary>
    private int PayloadLimit()
    {
        var blocks = _receive.RangeCount + (_dsackEnd != _dsackStart ? 1 : 0);
        var extra = _sackPermitted && blocks > 0 ? 4 + (8 * Math.Min(blocks, _timestamps ? 3 : 4)) : 0;
        return MaxSegmentSize - extra;
    }

    /// <summary>RFC 2018 §4: the first block holds the most recently received segment, the rest follow.</summary>
    private void AddSackBlocks(ref TcpOptions options)
    {
        var max = _timestamps ? 3 : TcpOptions.MaxSackBlocks;
        var count = 0;
        var first = 0;
        if (_dsackEnd != _dsackStart)
        {
            // RFC 2883 §4: the D-SACK block goes first, reported once.
            options.SetSackBlock(count++, new SackBlock(_dsackStart, _dsackEnd));
            first = 1;
            _dsackStart = _dsackEnd;
            Statistics.DsacksSent++;
        }

        for (var i = 0; i < _receive.RangeCount && count < max; i++)
        {
            if (SequenceNumber.InWindow(_lastReceivedSequence, _receive.RangeStart(i), _receive.RangeEnd(i)))
            {
                options.SetSackBlock(count++, new SackBlock(_receive.RangeStart(i), _receive.RangeEnd(i)));
                break;
            }
        }

        for (var i = 0; i < _receive.RangeCount && count < max; i++)
        {
            if (count > first && options.GetSackBlock(first).Left == _receive.RangeStart(i))
            {
                continue;
            }

            options.SetSackBlock(count++, new SackBlock(_receive.RangeStart(i), _receive.RangeEnd(i)));
        }

        options.SackBlockCount = count;
    }

    /// <summary>Receiver-side SWS avoidance (RFC 9293 §3.8.6.2.2): announce a larger window only when it grew by min(buffer/2, MSS).</summary>
    private bool ShouldSendWindowUpdate()
    {
        if (State is not (TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2))
        {
            return false;
        }

        var rightEdge = ReceiveNext + (uint)_receive.Window;
        var growth = SequenceNumber.Diff(rightEdge, _advertisedRightEdge);
        return growth >= Math.Min(_receive.Capacity / 2, MaxSegmentSize);
    }

    private uint TimestampNow(long nowMicroseconds) => (uint)(nowMicroseconds / 1000) + _tsOffset;

    /// <summary>When this connection uses timestamps: the last TSval seen from the peer, TS.Recent (RFC 7323 §4.3), for RFC 6191.</summary>
    public bool TryGetLastPeerTimestamp(out uint tsRecent)
    {
        tsRecent = _tsRecent;
        return _timestamps;
    }
}
