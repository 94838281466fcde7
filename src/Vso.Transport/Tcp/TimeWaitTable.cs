using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Vso.Transport.Interface;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// The connections in TIME-WAIT (RFC 9293 §3.6.1), one <see cref="TimeWaitEntry"/> per 4-tuple instead of a whole
/// <see cref="TcpConnection"/>: the connection goes when it enters TIME-WAIT and the entry answers for it until 2*MSL
/// have passed. It answers segments as the connection did in TIME-WAIT (§3.10.7.4): PAWS (RFC 7323 §5.3), the
/// acceptability test, a RST at RCV.NXT ends it (no RFC 1337 protection, as before), a SYN either starts a new
/// incarnation (RFC 6191, <see cref="TryReuse"/>) or gets a challenge ACK (RFC 5961 §4.2), a retransmitted FIN is
/// acknowledged again and restarts the timer. Engine thread only. Nothing here allocates once the dictionary and the
/// expiry queue have grown to the table's size.
/// </summary>
internal sealed class TimeWaitTable(TcpLayer layer)
{
    private readonly Dictionary<ConnectionId, TimeWaitEntry> _entries = [];

    /// <summary>
    /// Expiry in deadline order; an item whose serial is not its entry's is stale (the 4-tuple was reused), and an item
    /// earlier than its entry's deadline (a restarted timer) is queued again for that deadline when it comes up.
    /// </summary>
    private readonly PriorityQueue<(ConnectionId Id, uint Serial), long> _expiry = new();

    private uint _serial;

    public int Count => _entries.Count;

    /// <summary>The earliest expiry queued, or <see cref="long.MaxValue"/>.</summary>
    public long NextDeadline => _expiry.TryPeek(out _, out var deadline) ? deadline : long.MaxValue;

    public bool Contains(in ConnectionId id) => _entries.ContainsKey(id);

    /// <summary>Whether an entry uses <paramref name="port"/> locally (bind(2) without SO_REUSEADDR refuses it).</summary>
    public bool UsesLocalPort(ushort port)
    {
        foreach (var id in _entries.Keys)
        {
            if (id.LocalPort == port)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Takes over a connection entering TIME-WAIT (its own table entry goes as it terminates).</summary>
    public void Add(in ConnectionId id, TimeWaitEntry entry)
    {
        var now = layer.Clock.NowMicroseconds;
        entry.Deadline = now + entry.TimeWaitMicroseconds;
        entry.Serial = ++_serial;
        _entries[id] = entry;
        if (_expiry.Count >= (2 * _entries.Count) + 64)
        {
            // Reused 4-tuples leave stale items behind (a load generator that cycles through its ports reuses every
            // one): rebuilt from the entries, the queue stays within twice their number, in the capacity it has.
            _expiry.Clear();
            foreach (var (key, value) in _entries)
            {
                _expiry.Enqueue((key, value.Serial), value.Deadline);
            }
        }
        else
        {
            _expiry.Enqueue((id, entry.Serial), entry.Deadline);
        }
    }

    /// <summary>Expires the entries whose 2*MSL passed; true when one did.</summary>
    public bool Expire(long now)
    {
        var any = false;
        while (_expiry.TryPeek(out var item, out var deadline) && deadline <= now)
        {
            _expiry.Dequeue();
            ref var entry = ref CollectionsMarshal.GetValueRefOrNullRef(_entries, item.Id);
            if (Unsafe.IsNullRef(ref entry) || entry.Serial != item.Serial)
            {
                continue;
            }

            if (entry.Deadline <= now)
            {
                _entries.Remove(item.Id);
                any = true;
            }
            else
            {
                _expiry.Enqueue(item, entry.Deadline);
            }
        }

        return any;
    }

    /// <summary>The stack stops: every entry goes.</summary>
    public void Clear()
    {
        _entries.Clear();
        _expiry.Clear();
    }

    /// <summary>Gives back the memory of a table that was larger (the allocation probe measures what entries hold).</summary>
    public void TrimExcess()
    {
        _entries.TrimExcess();
        _expiry.TrimExcess();
    }

    /// <summary>
    /// A new SYN for a 4-tuple in TIME-WAIT may start a new incarnation (RFC 9293 §3.6.1) when it cannot be confused with
    /// the old one's segments: RFC 6191 §2 decides by timestamp when both incarnations use timestamps, else by sequence
    /// number. True when the entry went and the SYN is the listener's.
    /// </summary>
    public bool TryReuse(in ConnectionId id, in TcpSegment segment)
    {
        if ((segment.Flags & (TcpFlags.Syn | TcpFlags.Ack | TcpFlags.Rst)) != TcpFlags.Syn || !layer.HasListener(segment.DestinationPort))
        {
            return false;
        }

        ref var entry = ref CollectionsMarshal.GetValueRefOrNullRef(_entries, id);
        if (Unsafe.IsNullRef(ref entry) || !IsNewIncarnation(entry, segment))
        {
            return false;
        }

        _entries.Remove(id);
        return true;
    }

    /// <summary>RFC 6191 §2: is the SYN later than every segment of the connection in TIME-WAIT?</summary>
    private bool IsNewIncarnation(in TimeWaitEntry entry, in TcpSegment segment)
    {
        var sequenceIsNewer = SequenceNumber.Gt(segment.SequenceNumber, entry.ReceiveNext);

        // "TCP Timestamps would be enabled for the new incarnation": we offer them and the SYN carries them (RFC 7323 §3.2).
        if (entry.Timestamps && layer.Settings.Timestamps && segment.Options.HasTimestamp)
        {
            // The timestamp is the clock that orders the incarnations; an equal one falls back to the sequence number.
            // TSval comparisons are modular, like sequence numbers (RFC 7323 §5.3).
            var tsVal = segment.Options.TsVal;
            return SequenceNumber.Gt(tsVal, entry.TsRecent) || (tsVal == entry.TsRecent && sequenceIsNewer);
        }

        // The old incarnation did not use timestamps, or the new one will not: the sequence number decides.
        return sequenceIsNewer;
    }

    /// <summary>SEGMENT ARRIVES in TIME-WAIT (RFC 9293 §3.10.7.4); false when no entry has this 4-tuple.</summary>
    public bool OnSegment(in ConnectionId id, in TcpSegment segment)
    {
        ref var entry = ref CollectionsMarshal.GetValueRefOrNullRef(_entries, id);
        if (Unsafe.IsNullRef(ref entry))
        {
            return false;
        }

        var now = layer.Clock.NowMicroseconds;
        var flags = segment.Flags;
        var seq = segment.SequenceNumber;
        var ack = segment.AcknowledgmentNumber;
        var payloadLength = segment.Payload.Length;
        var options = segment.Options;
        var segLen = payloadLength + ((flags & TcpFlags.Syn) != 0 ? 1 : 0) + ((flags & TcpFlags.Fin) != 0 ? 1 : 0);

        // RFC 7323 §5.3 R1 (PAWS), with the exception of a reordered pure duplicate ACK (Linux's tcp_disordered_ack).
        if (entry.Timestamps && options.HasTimestamp && (flags & TcpFlags.Rst) == 0 && SequenceNumber.Lt(options.TsVal, entry.TsRecent)
            && !IsDisorderedAck(entry, segment))
        {
            SendInvalidSegmentAck(id, ref entry, flags, segLen, now);
            return true;
        }

        // First check: acceptability against the window last advertised.
        if (!IsAcceptable(entry, seq, segLen))
        {
            if ((flags & TcpFlags.Rst) == 0)
            {
                // An old duplicate with data is reported with a D-SACK (RFC 2883 §4 (1)).
                var duplicate = payloadLength > 0 && entry.Sack && SequenceNumber.Le(seq + (uint)payloadLength, entry.ReceiveNext);
                SendInvalidSegmentAck(id, ref entry, flags, segLen, now, duplicate ? seq : 0, duplicate ? seq + (uint)payloadLength : 0);
            }

            if ((flags & TcpFlags.Fin) != 0)
            {
                // A retransmitted FIN: acknowledged above, and the 2*MSL timer starts over.
                entry.Deadline = now + entry.TimeWaitMicroseconds;
            }

            return true;
        }

        // Second check: RST. In the window but not at RCV.NXT a challenge ACK (RFC 5961 §3.2); at RCV.NXT the entry goes.
        if ((flags & TcpFlags.Rst) != 0)
        {
            if (seq != entry.ReceiveNext)
            {
                SendChallengeAck(id, ref entry, now);
                return true;
            }

            _entries.Remove(id);
            return true;
        }

        // Fourth check: a SYN that did not start a new incarnation gets a challenge ACK (RFC 5961 §4.2).
        if ((flags & TcpFlags.Syn) != 0)
        {
            SendChallengeAck(id, ref entry, now);
            return true;
        }

        if ((flags & TcpFlags.Ack) == 0)
        {
            return true;
        }

        // Fifth check: the ACK's acceptability (RFC 5961 §5.2): everything we sent is acknowledged, so SND.UNA = SND.MAX.
        if (SequenceNumber.Gt(ack, entry.SendMax) || SequenceNumber.Lt(ack, entry.OldestAcceptableAck))
        {
            SendChallengeAck(id, ref entry, now);
            return true;
        }

        // RFC 7323 §4.3 (3): TS.Recent from an acceptable segment that covers Last.ACK.sent (RCV.NXT here).
        if (entry.Timestamps && options.HasTimestamp && SequenceNumber.Le(seq, entry.ReceiveNext) && SequenceNumber.Ge(options.TsVal, entry.TsRecent))
        {
            entry.TsRecent = options.TsVal;
        }

        if (ack == entry.SendMax)
        {
            entry.SendWindow = (uint)segment.Window << entry.SendWindowShift;
        }

        // Text is ignored in TIME-WAIT; a FIN is acknowledged and restarts the timer (eighth check).
        if ((flags & TcpFlags.Fin) != 0)
        {
            SendAck(id, ref entry, now);
            entry.Deadline = now + entry.TimeWaitMicroseconds;
        }

        return true;
    }

    /// <summary>A pure ACK at RCV.NXT that acknowledges nothing new and does not change the window.</summary>
    private static bool IsDisorderedAck(in TimeWaitEntry entry, in TcpSegment segment) =>
        (segment.Flags & (TcpFlags.Syn | TcpFlags.Fin | TcpFlags.Rst | TcpFlags.Ack)) == TcpFlags.Ack
        && segment.Payload.Length == 0
        && segment.SequenceNumber == entry.ReceiveNext
        && segment.AcknowledgmentNumber == entry.SendMax
        && ((uint)segment.Window << entry.SendWindowShift) == entry.SendWindow;

    /// <summary>§3.10.7.4 first check, the four cases, against RCV.WND as advertised.</summary>
    private static bool IsAcceptable(in TimeWaitEntry entry, uint seq, int segLen)
    {
        var next = entry.ReceiveNext;
        var window = entry.ReceiveWindow;
        if (segLen == 0)
        {
            return window == 0 ? seq == next : SequenceNumber.InWindow(seq, next, next + window);
        }

        if (window == 0)
        {
            return false;
        }

        var last = seq + (uint)(segLen - 1);
        return SequenceNumber.InWindow(seq, next, next + window) || SequenceNumber.InWindow(last, next, next + window);
    }

    /// <summary>
    /// The ACK an unacceptable segment gets: one that occupies no sequence space, or carries a SYN, at most once per
    /// interval (Linux's tcp_invalid_ratelimit); one with data or FIN always (see TcpConnection.SendInvalidSegmentAck).
    /// </summary>
    private void SendInvalidSegmentAck(in ConnectionId id, ref TimeWaitEntry entry, TcpFlags flags, int segLen, long now, uint dsackStart = 0, uint dsackEnd = 0)
    {
        if ((segLen > 0 && (flags & TcpFlags.Syn) == 0) || entry.InvalidAckIntervalMicroseconds == 0 || TryTake(ref entry.InvalidAckAt, entry.InvalidAckIntervalMicroseconds, now))
        {
            SendAck(id, ref entry, now, dsackStart, dsackEnd);
            return;
        }

        layer.Metrics.InvalidSegmentAcksSuppressed.Add(1);
    }

    /// <summary>A challenge ACK (RFC 5961 §7): the entry's own limit first, then the stack's.</summary>
    private void SendChallengeAck(in ConnectionId id, ref TimeWaitEntry entry, long now)
    {
        if (entry.ChallengeAckIntervalMicroseconds > 0 && !TryTake(ref entry.ChallengeAckAt, entry.ChallengeAckIntervalMicroseconds, now))
        {
            layer.Metrics.ChallengeAcksSuppressedByConnection.Add(1);
            return;
        }

        if (!layer.TryTakeChallengeAck(now))
        {
            return;
        }

        layer.Metrics.ChallengeAcksSent.Add(1);
        SendAck(id, ref entry, now);
    }

    /// <summary>A one-token bucket as a time: a reply may go from <paramref name="nextAt"/> on, the next one an interval later.</summary>
    private static bool TryTake(ref long nextAt, uint intervalMicroseconds, long now)
    {
        if (now < nextAt)
        {
            return false;
        }

        nextAt = now + intervalMicroseconds;
        return true;
    }

    /// <summary>
    /// SEG.SEQ = SND.MAX, SEG.ACK = RCV.NXT, our window, TSval/TSecr when timestamps are on and a D-SACK block for a
    /// duplicate. Not sent when the path waits for ARP: the peer retransmits its FIN.
    /// </summary>
    private void SendAck(in ConnectionId id, ref TimeWaitEntry entry, long now, uint dsackStart = 0, uint dsackEnd = 0)
    {
        var ip = layer.Ip;
        if (!ip.TryBegin(id.RemoteAddress, IpProtocol.Tcp))
        {
            return;
        }

        var options = TcpOptions.None;
        if (entry.Timestamps)
        {
            options.HasTimestamp = true;
            options.TsVal = (uint)(now / 1000) + entry.TsOffset;
            options.TsEcr = entry.TsRecent;
        }

        if (dsackStart != dsackEnd)
        {
            options.SetSackBlock(0, new SackBlock(dsackStart, dsackEnd));
        }

        var header = new TcpRepr
        {
            SourcePort = id.LocalPort,
            DestinationPort = id.RemotePort,
            SequenceNumber = entry.SendMax,
            AcknowledgmentNumber = entry.ReceiveNext,
            Flags = TcpFlags.Ack,
            Window = entry.WindowField,
            Options = options,
        };
        var tcp = ip.Append(header.HeaderLength);
        var headerLength = header.Emit(tcp);
        TcpChecksum.Finish(tcp, headerLength, id.LocalAddress, id.RemoteAddress, 0, default);
        ip.Commit();

        // The right edge offered never moves back (RFC 9293 §3.8.6).
        entry.ReceiveWindow = Math.Max(entry.ReceiveWindow, entry.OfferedWindow);
    }
}
