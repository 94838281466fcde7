using System.Runtime.CompilerServices;

namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// What the sender knows about every segment in flight, without their bytes: sequence range, when it
/// was last sent, whether the peer SACKed it (RFC 2018), whether loss detection marked it lost, and
/// whether it was retransmitted. Records lie in a ring in sequence order and tile [snd.una, snd.max)
/// without gaps, so a SACK block finds its first record by binary search and the scoreboard stays fast
/// with thousands of segments in flight. The bytes themselves stay with the host's descriptors.
/// </summary>
internal sealed class SackScoreboard
{
    /// <summary>
    /// First ring size; the ring is made at the first transmission (an idle connection has none) and doubles as needed.
    /// Small: a request/response connection sends a segment or two (16 records were 536 bytes per connection, issue 12).
    /// </summary>
    private const int InitialCapacity = 4;

    private Record[] _ring = [];
    private int _head;

    /// <summary>Segments tracked (sent and not cumulatively acknowledged).</summary>
    public int Count { get; private set; }

    /// <summary>Bytes SACKed above snd.una.</summary>
    public long SackedBytes { get; private set; }

    /// <summary>Bytes marked lost and not retransmitted since.</summary>
    public long LostBytes { get; private set; }

    /// <summary>Bytes retransmitted and neither acknowledged nor SACKed yet (RFC 6675 pipe counts them again).</summary>
    public long RetransmittedInFlightBytes { get; private set; }

    /// <summary>End of the highest SACKed segment (RFC 6675 HighACK side), or snd.una when none.</summary>
    public uint HighestSackedEnd { get; private set; }

    /// <summary>Number of SACKed segments.</summary>
    public int SackedSegments { get; private set; }

    /// <summary>
    /// Records retransmitted at least once. While there are none, sequence order is send-time order (new data is
    /// appended with increasing stamps), which lets RACK stop at the first record sent after its reference.
    /// </summary>
    public int RetransmittedRecords { get; private set; }

    public ref readonly Record this[int index] => ref _ring[Slot(index)];

    private long _lastStamp = long.MinValue;

    /// <summary>The connection is reused: no record (the ring keeps its capacity; its old slots are beyond <see cref="Count"/>).</summary>
    public void Recycle()
    {
        _head = 0;
        Count = 0;
        SackedBytes = 0;
        LostBytes = 0;
        RetransmittedInFlightBytes = 0;
        HighestSackedEnd = 0;
        SackedSegments = 0;
        RetransmittedRecords = 0;
        _lastStamp = long.MinValue;
    }

    /// <summary>
    /// Send times are made strictly increasing (at most 1 µs apart within one clock tick): RACK orders transmissions
    /// by time and breaks ties by sequence number (RFC 8985 §6.2, RACK_sent_after), which is wrong for a
    /// retransmission that leaves in the same tick as new data after it: a SACK of that new data then marked the
    /// retransmission lost at once, and it was sent a second time for nothing.
    /// </summary>
    private long Stamp(long now) => _lastStamp = Math.Max(now, _lastStamp + 1);

    /// <summary>A segment on its first transmission: appended after the last one.</summary>
    public void OnTransmit(uint start, uint end, long now)
    {
        if (Count == _ring.Length)
        {
            Grow();
        }

        if (Count == 0)
        {
            // The first segment in flight starts at snd.una. Never a 0 sentinel: serial-number comparison (RFC 1982)
            // with 0 depends on the half of the space the ISN lies in, and with an ISN in the upper half no SACK ever
            // moved this mark past 0, so RACK saw every delivery as reordered (RFC 8985 §6.2 step 3).
            HighestSackedEnd = start;
        }

        _ring[Slot(Count)] = new Record { Start = start, End = end, SentAt = Stamp(now), Transmissions = 1 };
        Count++;
    }

    /// <summary>
    /// A retransmission of [start, end): the records it covers get a new send time and lose their lost mark.
    /// A record only partly covered is split first, so the range maps onto whole records.
    /// </summary>
    public void OnRetransmit(uint start, uint end, long now)
    {
        var i = IndexOf(start);
        if (i < 0)
        {
            return;
        }

        SplitAt(i, start);
        i = IndexOf(start);
        now = Stamp(now);
        for (; i < Count; i++)
        {
            ref var r = ref _ring[Slot(i)];
            if (!SequenceNumber.Lt(r.Start, end))
            {
                break;
            }

            if (SequenceNumber.Gt(r.End, end))
            {
                SplitAt(i, end);
                r = ref _ring[Slot(i)];
            }

            // The original stays lost (RFC 6675 pipe: a lost segment counts only through its retransmission).
            if (!r.IsRetransmittedInFlight && !r.IsSacked)
            {
                r.IsRetransmittedInFlight = true;
                RetransmittedInFlightBytes += r.Length;
            }

            if (!r.WasRetransmitted)
            {
                r.WasRetransmitted = true;
                RetransmittedRecords++;
            }

            r.SentAt = now;
            r.Transmissions++;
        }
    }

    /// <summary>
    /// The cumulative ACK moved to <paramref name="una"/>: drop the records below it, reporting the most
    /// recently sent of those not SACKed before (RACK's candidate for RACK.xmit_ts).
    /// </summary>
    public void OnCumulativeAck(uint una, ref long newestSentAt, ref uint newestEnd, ref bool newestWasRetransmitted)
    {
        while (Count > 0)
        {
            ref var r = ref _ring[_head];
            if (SequenceNumber.Le(r.End, una))
            {
                if (!r.IsSacked && (r.SentAt > newestSentAt || (r.SentAt == newestSentAt && SequenceNumber.Gt(r.End, newestEnd))))
                {
                    newestSentAt = r.SentAt;
                    newestEnd = r.End;
                    newestWasRetransmitted = r.WasRetransmitted;
                }

                Forget(ref r);
                r = default;
                _head = (_head + 1) & (_ring.Length - 1);
                Count--;
                continue;
            }

            if (SequenceNumber.Lt(r.Start, una))
            {
                // Part of the segment was acknowledged (the peer took a prefix): trim it.
                var trimmed = (long)(uint)(una - r.Start);
                if (r.IsSacked)
                {
                    SackedBytes -= trimmed;
                }

                if (r.IsLost)
                {
                    LostBytes -= trimmed;
                }

                if (r.IsRetransmittedInFlight)
                {
                    RetransmittedInFlightBytes -= trimmed;
                }

                r.Start = una;
            }

            break;
        }

        if (Count == 0 || SequenceNumber.Lt(HighestSackedEnd, una))
        {
            HighestSackedEnd = una;
        }
    }

    /// <summary>
    /// Marks the records a SACK block covers. Returns the bytes newly SACKed; <paramref name="newestSentAt"/>
    /// receives the latest send time among them (RACK's RACK.xmit_ts candidate) and
    /// <paramref name="newestEnd"/> the end of that segment.
    /// </summary>
    public long OnSackBlock(uint left, uint right, ref long newestSentAt, ref uint newestEnd, ref bool newestWasRetransmitted)
    {
        var i = IndexOf(left);
        if (i < 0)
        {
            // The block starts below the first record (partly acknowledged): start from the head.
            if (Count == 0 || !SequenceNumber.Lt(_ring[_head].Start, right))
            {
                return 0;
            }

            i = 0;
        }

        long newly = 0;
        for (; i < Count; i++)
        {
            ref var r = ref _ring[Slot(i)];
            if (!SequenceNumber.Le(r.End, right))
            {
                break;
            }

            if (r.IsSacked || SequenceNumber.Lt(r.Start, left))
            {
                continue;
            }

            r.IsSacked = true;
            SackedSegments++;
            SackedBytes += r.Length;
            newly += r.Length;
            if (r.IsLost)
            {
                r.IsLost = false;
                LostBytes -= r.Length;
            }

            if (r.IsRetransmittedInFlight)
            {
                r.IsRetransmittedInFlight = false;
                RetransmittedInFlightBytes -= r.Length;
            }

            if (SequenceNumber.Gt(r.End, HighestSackedEnd))
            {
                HighestSackedEnd = r.End;
            }

            if (r.SentAt > newestSentAt || (r.SentAt == newestSentAt && SequenceNumber.Gt(r.End, newestEnd)))
            {
                newestSentAt = r.SentAt;
                newestEnd = r.End;
                newestWasRetransmitted = r.WasRetransmitted;
            }
        }

        return newly;
    }

    /// <summary>
    /// Marks record <paramref name="index"/> lost (a loss detector decided): its original if not yet, or its
    /// retransmission if it was resent (a lost retransmission must be sent again). Returns false when
    /// nothing changed (SACKed, or already lost and waiting for retransmission).
    /// </summary>
    public bool MarkLost(int index)
    {
        ref var r = ref _ring[Slot(index)];
        if (r.IsSacked)
        {
            return false;
        }

        if (r.IsLost)
        {
            if (!r.IsRetransmittedInFlight)
            {
                return false;
            }

            r.IsRetransmittedInFlight = false;
            RetransmittedInFlightBytes -= r.Length;
            return true;
        }

        r.IsLost = true;
        LostBytes += r.Length;
        if (r.IsRetransmittedInFlight)
        {
            // Declared lost after a retransmission not driven by loss marking (a probe, a timeout): resend it.
            r.IsRetransmittedInFlight = false;
            RetransmittedInFlightBytes -= r.Length;
        }

        return true;
    }

    /// <summary>Whether record <paramref name="index"/> waits for a retransmission: lost and not resent since.</summary>
    public bool NeedsRetransmission(int index)
    {
        ref readonly var r = ref _ring[Slot(index)];
        return r.IsLost && !r.IsRetransmittedInFlight && !r.IsSacked;
    }

    /// <summary>Forgets every loss mark (a timeout turned out spurious: nothing was lost).</summary>
    public void ClearLost()
    {
        for (var i = 0; i < Count; i++)
        {
            _ring[Slot(i)].IsLost = false;
        }

        LostBytes = 0;
    }

    /// <summary>
    /// RFC 6675 §4 pipe: bytes the sender believes are in the network — not SACKed, not lost, plus every
    /// retransmission still out.
    /// </summary>
    public long Pipe(uint una, uint sendMax) => (long)(uint)(sendMax - una) - SackedBytes - LostBytes + RetransmittedInFlightBytes;

    /// <summary>Marks every record lost (after a retransmission timeout, RFC 6675 §5.1).</summary>
    public void MarkAllLost()
    {
        for (var i = 0; i < Count; i++)
        {
            MarkLost(i);
        }
    }

    /// <summary>Forgets SACK information (RFC 2018 §8: the receiver may renege; after a timeout we start clean).</summary>
    public void ClearSacks()
    {
        for (var i = 0; i < Count; i++)
        {
            _ring[Slot(i)].IsSacked = false;
        }

        SackedBytes = 0;
        SackedSegments = 0;
    }

    /// <summary>Index of the record that holds <paramref name="sequence"/>, or -1.</summary>
    public int IndexOf(uint sequence)
    {
        if (Count == 0)
        {
            return -1;
        }

        var first = _ring[_head].Start;
        var offset = (uint)(sequence - first);
        if (offset >= (uint)(_ring[Slot(Count - 1)].End - first))
        {
            return -1;
        }

        int low = 0, high = Count - 1;
        while (low < high)
        {
            var mid = (low + high + 1) >> 1;
            if ((uint)(_ring[Slot(mid)].Start - first) <= offset)
            {
                low = mid;
            }
            else
            {
                high = mid - 1;
            }
        }

        return low;
    }

    public void Clear()
    {
        Array.Clear(_ring);
        _head = 0;
        Count = 0;
        SackedBytes = 0;
        SackedSegments = 0;
        LostBytes = 0;
        RetransmittedInFlightBytes = 0;
        RetransmittedRecords = 0;
    }

    private void Forget(ref Record r)
    {
        if (r.WasRetransmitted)
        {
            RetransmittedRecords--;
        }

        if (r.IsSacked)
        {
            SackedBytes -= r.Length;
            SackedSegments--;
        }

        if (r.IsLost)
        {
            LostBytes -= r.Length;
        }

        if (r.IsRetransmittedInFlight)
        {
            RetransmittedInFlightBytes -= r.Length;
        }
    }

    /// <summary>Splits the record holding <paramref name="sequence"/> so that a record starts there.</summary>
    private void SplitAt(int index, uint sequence)
    {
        ref var r = ref _ring[Slot(index)];
        if (!SequenceNumber.Gt(sequence, r.Start) || !SequenceNumber.Lt(sequence, r.End))
        {
            return;
        }

        if (Count == _ring.Length)
        {
            Grow();
            r = ref _ring[Slot(index)];
        }

        // Shift the records after index one slot up, then split in place.
        for (var j = Count; j > index + 1; j--)
        {
            _ring[Slot(j)] = _ring[Slot(j - 1)];
        }

        var tail = _ring[Slot(index)];
        tail.Start = sequence;
        if (tail.IsSacked)
        {
            SackedSegments++;
        }

        if (tail.WasRetransmitted)
        {
            RetransmittedRecords++;
        }

        _ring[Slot(index + 1)] = tail;
        _ring[Slot(index)].End = sequence;
        Count++;
    }

    private void Grow()
    {
        var bigger = new Record[Math.Max(InitialCapacity, _ring.Length * 2)];
        for (var i = 0; i < Count; i++)
        {
            bigger[i] = _ring[Slot(i)];
        }

        _ring = bigger;
        _head = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Slot(int index) => (_head + index) & (_ring.Length - 1);

    /// <summary>One transmitted segment.</summary>
    public struct Record
    {
        public uint Start;
        public uint End;

        /// <summary>Engine time of the latest (re)transmission.</summary>
        public long SentAt;

        public int Transmissions;
        public bool IsSacked;
        public bool IsLost;

        /// <summary>Retransmitted and not yet acknowledged, SACKed or declared lost again.</summary>
        public bool IsRetransmittedInFlight;

        /// <summary>Retransmitted at least once.</summary>
        public bool WasRetransmitted;

        public readonly int Length => (int)(End - Start);
    }
}
