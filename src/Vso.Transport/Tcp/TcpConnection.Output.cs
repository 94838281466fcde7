using Vso.MemoryPinning;
using Vso.Transport.Engine;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>Building segments: data through the host by descriptor, SYN, FIN, ACK and RST.</summary>
internal sealed partial class TcpConnection
{
    private void SendSyn()
    {
        _sender.OnSynSending();
        EmitSyn();
        _sender.ArmRetransmitTimer(NowMicroseconds);
    }

    internal void RetransmitSyn()
    {
        if (_synLeft)
        {
            _sender.StopRttTiming(); // Karn's rule (RFC 6298 §3): the copy that is answered is unknown
        }

        EmitSyn();
        if (_sender.RetransmitDeadline == 0)
        {
            _sender.ArmRetransmitTimer(NowMicroseconds);
        }
    }

    /// <summary>A copy of our SYN (or SYN-ACK) has left: a later one is a retransmission and its answer ambiguous.</summary>
    private bool _synLeft;

    /// <summary>
    /// Sends our SYN (SYN-ACK in SYN-RECEIVED). The first copy to leave is timed for the first RTT sample (RFC 6298 §2.2)
    /// from the moment it is emitted, not from when it was first handed to IP: one that waited for ARP would otherwise
    /// measure the resolution too, a one-time local delay, not the path the RTO and RACK's min_RTT (RFC 8985 §6.2, a
    /// minimum that a too-large first sample would hold until a later one) estimate. No earlier copy reached the
    /// wire, so Karn's rule does not apply to it.
    /// </summary>
    private bool EmitSyn()
    {
        var first = !_synLeft;
        if (!Emit(_sender.InitialSendSequence.Value, State == TcpState.SynSent ? TcpFlags.Syn : TcpFlags.Syn | TcpFlags.Ack, 0, isRetransmission: !first))
        {
            return false;
        }

        _synLeft = true;
        if (first)
        {
            _sender.TimeSegment(_sender.InitialSendSequence);
        }

        return true;
    }

    /// <summary>
    /// A pure ACK carries SND.MAX, not SND.NXT: after a timeout rewinds SND.NXT (go-back-N) the peer's
    /// RCV.NXT may already lie beyond it, and an ACK below RCV.NXT fails the peer's acceptability test
    /// and is dropped, which would lose the acknowledgment it carries (BSD does the same).
    /// </summary>
    internal void SendAck() => Emit(_sender.SendMax.Value, TcpFlags.Ack, 0, isRetransmission: false);

    private void SendReset(uint sequence) => Emit(sequence, TcpFlags.Rst | TcpFlags.Ack, 0, isRetransmission: false);

    /// <summary>
    /// Builds one segment into the link's transmit batch. The payload comes from the host by descriptor:
    /// copied into the frame (Copy) or leased and gathered (Pinned). Returns false if it could not be sent.
    /// <paramref name="gsoSize"/> &gt; 0 (Pinned only): a super-segment of <paramref name="payloadLength"/> bytes that the
    /// link cuts into segments of that size; its checksum field holds the pseudo-header sum, the kernel finishes each.
    /// </summary>
    internal bool Emit(uint sequence, TcpFlags flags, int payloadLength, bool isRetransmission, int gsoSize = 0)
    {
        var ip = _layer.Ip;
        if (!ip.TryBegin(Id.RemoteAddress, IpProtocol.Tcp))
        {
            if ((flags & TcpFlags.Rst) != 0)
            {
                // The connection ends with this RST and will not send it again: it waits for ARP in the layer.
                _layer.DeferReset(Id, sequence, (flags & TcpFlags.Ack) != 0 ? _receiver.Next.Value : 0, flags);
                return false;
            }

            _emitBlocked = true;

            // The path waits for ARP. If the request or its reply is lost, only a retry asks again; with nothing in
            // flight no timer would ever run, and the connection stalled for good. The retransmission timer retries.
            if (_sender.RetransmitDeadline == 0 && State is not (TcpState.Closed or TcpState.TimeWait))
            {
                _sender.ArmRetransmitTimer(NowMicroseconds);
            }

            return false;
        }

        var now = NowMicroseconds;
        var isSyn = (flags & TcpFlags.Syn) != 0;
        var windowBytes = (uint)_receiver.Window;

        // RFC 7323 §2.2: the window field of a SYN is never scaled.
        var window = isSyn ? (ushort)Math.Min(windowBytes, ushort.MaxValue) : (ushort)Math.Min(windowBytes >> EffectiveReceiveShift, ushort.MaxValue);
        var header = new TcpRepr
        {
            SourcePort = Id.LocalPort,
            DestinationPort = Id.RemotePort,
            SequenceNumber = sequence,
            AcknowledgmentNumber = (flags & TcpFlags.Ack) != 0 ? _receiver.Next.Value : 0,
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
            _lastAckSent = _receiver.Next;
            _receiver.OnAckSent(window, isSyn ? 0 : EffectiveReceiveShift);
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
        var descriptor = _sender.Locate(sequence, out var offset);
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
                    _sender.Host!.CopyTo(descriptor, offset, destination);
                    sum.Add(destination);
                    copied += n;
                }
                else
                {
                    var lease = _sender.Host!.Lease(descriptor, offset, n);
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
            _layer.Log.HostRefusedDescriptor(Id, ex.Message);
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
            SendReset(_sender.SendMax.Value);
            Terminate(failure);
        }
    }

    private TcpOptions BuildOptions(TcpFlags flags, long now)
    {
        var options = TcpOptions.None;
        var isSyn = (flags & TcpFlags.Syn) != 0;
        if (isSyn)
        {
            options.Mss = (ushort)AnnouncedMss;
            if (_windowScaling)
            {
                options.WindowScale = (sbyte)_receiver.WindowShift;
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

        if (_sackPermitted && !isSyn && _receiver.PendingSackBlocks > 0)
        {
            _receiver.AddSackBlocks(ref options);
        }

        return options;
    }

    /// <summary>
    /// Payload that fits one data segment now: the MSS less any options beyond the timestamps every segment
    /// carries (SACK blocks while we hold out-of-order data), so a frame never exceeds the MTU.
    /// </summary>
    internal int PayloadLimit()
    {
        var blocks = _receiver.PendingSackBlocks;
        var extra = _sackPermitted && blocks > 0 ? 4 + (8 * Math.Min(blocks, _timestamps ? 3 : 4)) : 0;
        return MaxSegmentSize - extra;
    }

    internal uint TimestampNow(long nowMicroseconds) => (uint)(nowMicroseconds / 1000) + _tsOffset;

    /// <summary>When this connection uses timestamps: the last TSval seen from the peer, TS.Recent (RFC 7323 §4.3), for RFC 6191.</summary>
    public bool TryGetLastPeerTimestamp(out uint tsRecent)
    {
        tsRecent = _tsRecent;
        return _timestamps;
    }
}
