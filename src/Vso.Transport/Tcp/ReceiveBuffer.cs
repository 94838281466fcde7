namespace Vso.Transport.Tcp;

/// <summary>
/// The receive side's memory: a ring the size of the receive buffer. In-order bytes wait at its front
/// for the application; out-of-order bytes are written straight to their final place further on and
/// tracked as sequence ranges, so reassembly needs no extra memory and is bounded by the window
/// (RFC 9293 §3.10.7.4: segments beyond RCV.NXT are held for later processing). The number of
/// separate ranges is bounded too; a segment that would need one more is dropped (the peer resends).
/// </summary>
internal sealed class ReceiveBuffer
{
    private readonly byte[] _ring;
    private readonly uint[] _rangeStart;
    private readonly uint[] _rangeEnd;
    private int _readPosition;

    public ReceiveBuffer(int capacity, int maxRanges)
    {
        _ring = new byte[capacity];
        _rangeStart = new uint[maxRanges];
        _rangeEnd = new uint[maxRanges];
    }

    public int Capacity => _ring.Length;

    /// <summary>In-order bytes waiting for the application.</summary>
    public int Count { get; private set; }

    /// <summary>Out-of-order ranges held beyond RCV.NXT.</summary>
    public int RangeCount { get; private set; }

    /// <summary>Free space after the in-order bytes: the receive window.</summary>
    public int Window => _ring.Length - Count;

    public uint RangeStart(int i) => _rangeStart[i];

    /// <summary>Whether [start, end) lies wholly inside one out-of-order range already held.</summary>
    public bool Holds(uint start, uint end)
    {
        for (var i = 0; i < RangeCount; i++)
        {
            if (SequenceNumber.Le(_rangeStart[i], start) && SequenceNumber.Le(end, _rangeEnd[i]))
            {
                return true;
            }
        }

        return false;
    }

    public uint RangeEnd(int i) => _rangeEnd[i];

    /// <summary>
    /// Places a segment's payload (already trimmed to start at or after <paramref name="rcvNxt"/> and to end
    /// inside the window). Returns how far RCV.NXT advances (0 when the bytes were out of order), or -1 when
    /// an out-of-order range could not be tracked and the bytes were dropped.
    /// </summary>
    public int Write(uint rcvNxt, uint sequence, ReadOnlySpan<byte> payload)
    {
        var offset = SequenceNumber.Diff(sequence, rcvNxt);
        if (payload.IsEmpty)
        {
            return 0;
        }

        if (offset > 0 && !TryAddRange(sequence, sequence + (uint)payload.Length))
        {
            return -1;
        }

        CopyIntoRing(Count + offset, payload);
        if (offset > 0)
        {
            return 0;
        }

        var end = rcvNxt + (uint)payload.Length;
        end = AbsorbRanges(end);
        var advance = (int)(end - rcvNxt);
        Count += advance;
        return advance;
    }

    /// <summary>Copies up to <c>destination.Length</c> in-order bytes out; returns how many.</summary>
    public int Read(Span<byte> destination)
    {
        var n = Math.Min(destination.Length, Count);
        var first = Math.Min(n, _ring.Length - _readPosition);
        _ring.AsSpan(_readPosition, first).CopyTo(destination);
        _ring.AsSpan(0, n - first).CopyTo(destination[first..]);
        _readPosition = (_readPosition + n) % _ring.Length;
        Count -= n;
        return n;
    }

    /// <summary>Forgets every out-of-order range (connection reset or closed).</summary>
    public void Clear()
    {
        Count = 0;
        RangeCount = 0;
        _readPosition = 0;
    }

    private void CopyIntoRing(int logicalOffset, ReadOnlySpan<byte> payload)
    {
        var start = (_readPosition + logicalOffset) % _ring.Length;
        var first = Math.Min(payload.Length, _ring.Length - start);
        payload[..first].CopyTo(_ring.AsSpan(start));
        payload[first..].CopyTo(_ring);
    }

    // Ranges are kept sorted and disjoint (non-adjacent ranges merged on insert).
    private bool TryAddRange(uint start, uint end)
    {
        var i = 0;
        while (i < RangeCount && SequenceNumber.Lt(_rangeEnd[i], start))
        {
            i++;
        }

        if (i < RangeCount && SequenceNumber.Le(_rangeStart[i], end))
        {
            // Overlaps or touches range i: grow it, then swallow any later ranges it now reaches.
            _rangeStart[i] = SequenceNumber.Min(_rangeStart[i], start);
            _rangeEnd[i] = SequenceNumber.Max(_rangeEnd[i], end);
            var j = i + 1;
            while (j < RangeCount && SequenceNumber.Le(_rangeStart[j], _rangeEnd[i]))
            {
                _rangeEnd[i] = SequenceNumber.Max(_rangeEnd[i], _rangeEnd[j]);
                j++;
            }

            RemoveRanges(i + 1, j - (i + 1));
            return true;
        }

        if (RangeCount == _rangeStart.Length)
        {
            return false;
        }

        Array.Copy(_rangeStart, i, _rangeStart, i + 1, RangeCount - i);
        Array.Copy(_rangeEnd, i, _rangeEnd, i + 1, RangeCount - i);
        _rangeStart[i] = start;
        _rangeEnd[i] = end;
        RangeCount++;
        return true;
    }

    private uint AbsorbRanges(uint end)
    {
        var absorbed = 0;
        while (absorbed < RangeCount && SequenceNumber.Le(_rangeStart[absorbed], end))
        {
            end = SequenceNumber.Max(end, _rangeEnd[absorbed]);
            absorbed++;
        }

        RemoveRanges(0, absorbed);
        return end;
    }

    private void RemoveRanges(int index, int count)
    {
        if (count == 0)
        {
            return;
        }

        Array.Copy(_rangeStart, index + count, _rangeStart, index, RangeCount - index - count);
        Array.Copy(_rangeEnd, index + count, _rangeEnd, index, RangeCount - index - count);
        RangeCount -= count;
    }
}
