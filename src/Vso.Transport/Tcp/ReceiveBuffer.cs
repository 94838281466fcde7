namespace Vso.Transport.Tcp;

/// <summary>
/// The receive side's memory: a ring the size of the receive buffer, made of pooled blocks
/// (<see cref="ReceiveBlockPool.BlockSize"/> bytes each) that are taken only where bytes land and given back as soon as
/// they hold nothing unread, so an idle connection holds no block at all. In-order bytes wait at the ring's front
/// for the application; out-of-order bytes are written straight to their final place further on and tracked as
/// sequence ranges, so reassembly copies nothing twice and is bounded by the window (RFC 9293 §3.10.7.4: segments
/// beyond RCV.NXT are held for later processing). The number of separate ranges is bounded too; a segment that
/// would need one more is dropped (the peer resends).
/// </summary>
internal sealed class ReceiveBuffer
{
    private const int BlockSize = ReceiveBlockPool.BlockSize;

    private readonly MemoryBudget _memory;
    private int _capacity;
    private readonly int _maxRanges;

    /// <summary>
    /// Block of each slot of the ring (slot i covers ring positions [i * BlockSize, (i + 1) * BlockSize)); null when empty.
    /// Rented from the pool with the first block and returned with the last.
    /// </summary>
    private byte[]?[]? _blocks;

    // Out-of-order ranges, sorted and disjoint; made on the first out-of-order segment.
    private uint[]? _rangeStart;
    private uint[]? _rangeEnd;

    private int _readPosition;

    /// <summary>Sequence number of the byte at <see cref="_readPosition"/> (RCV.NXT less the unread bytes).</summary>
    private uint _headSequence;

    public ReceiveBuffer(int capacity, int maxRanges, MemoryBudget memory)
    {
        _capacity = capacity;
        _maxRanges = maxRanges;
        _memory = memory;
    }

    public int Capacity => _capacity;

    /// <summary>
    /// The connection is reused: empty, at <paramref name="capacity"/>; false (not reusable) if a pool block is still held.
    /// The range arrays stay (nothing beyond <see cref="RangeCount"/> is read from them); the slot table went back with the last block.
    /// </summary>
    public bool TryRecycle(int capacity)
    {
        Clear();
        if (BlocksHeld != 0)
        {
            return false;
        }

        _capacity = capacity;
        _readPosition = 0;
        _headSequence = 0;
        return true;
    }

    /// <summary>In-order bytes waiting for the application.</summary>
    public int Count { get; private set; }

    /// <summary>Out-of-order ranges held beyond RCV.NXT.</summary>
    public int RangeCount { get; private set; }

    /// <summary>Bytes the out-of-order ranges hold.</summary>
    public int OutOfOrderBytes { get; private set; }

    /// <summary>Pool blocks this buffer holds.</summary>
    public int BlocksHeld { get; private set; }

    /// <summary>Free space after the in-order bytes: the receive window.</summary>
    public int Window => _capacity - Count;

    private int SlotCount => (_capacity + BlockSize - 1) / BlockSize;

    public uint RangeStart(int i) => _rangeStart![i];

    public uint RangeEnd(int i) => _rangeEnd![i];

    /// <summary>Whether [start, end) lies wholly inside one out-of-order range already held.</summary>
    public bool Holds(uint start, uint end)
    {
        for (var i = 0; i < RangeCount; i++)
        {
            if (SequenceNumber.Le(_rangeStart![i], start) && SequenceNumber.Le(end, _rangeEnd![i]))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Blocks a write of <paramref name="length"/> bytes at <paramref name="sequence"/> would take from the pool.</summary>
    public int BlocksNeeded(uint rcvNxt, uint sequence, int length)
    {
        var position = RingPosition(Count + SequenceNumber.Diff(sequence, rcvNxt));
        var needed = 0;
        while (length > 0)
        {
            var slot = position / BlockSize;
            var chunk = Math.Min(length, SlotEnd(slot) - position);
            if (_blocks?[slot] is null)
            {
                needed++;
            }

            length -= chunk;
            position = Advance(position, chunk);
        }

        return needed;
    }

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

        _headSequence = rcvNxt - (uint)Count;
        if (offset > 0)
        {
            if (!TryAddRange(sequence, sequence + (uint)payload.Length))
            {
                return -1;
            }

            CopyIntoRing(Count + offset, payload);
            RecountOutOfOrder();
            return 0;
        }

        CopyIntoRing(Count, payload);
        var rangesBefore = RangeCount;
        var end = AbsorbRanges(rcvNxt + (uint)payload.Length);
        var advance = (int)(end - rcvNxt);
        Count += advance;
        _memory.AddInOrder(advance);
        if (RangeCount != rangesBefore)
        {
            RecountOutOfOrder();
        }

        return advance;
    }

    /// <summary>
    /// In-order bytes the application took straight from the frame: with nothing buffered, the ring only moves past them,
    /// so later out-of-order bytes still land at their place.
    /// </summary>
    public void SkipTaken(int length)
    {
        if (Count != 0 || RangeCount != 0)
        {
            throw new InvalidOperationException("Bytes can be taken past the buffer only when it holds nothing.");
        }

        _readPosition = (int)(((long)_readPosition + length) % _capacity);
        _headSequence += (uint)length;
    }

    /// <summary>Copies up to <c>destination.Length</c> in-order bytes out; returns how many. Blocks read to their end go back to the pool.</summary>
    public int Read(Span<byte> destination)
    {
        var n = Math.Min(destination.Length, Count);
        if (n == 0)
        {
            return 0;
        }

        var firstSlot = _readPosition / BlockSize;
        var slotsPassed = 0;
        var position = _readPosition;
        var copied = 0;
        while (copied < n)
        {
            var slot = position / BlockSize;
            var slotEnd = SlotEnd(slot);
            var chunk = Math.Min(n - copied, slotEnd - position);
            _blocks![slot].AsSpan(position - (slot * BlockSize), chunk).CopyTo(destination[copied..]);
            copied += chunk;
            position = Advance(position, chunk);
            if (position == 0 || position == slotEnd)
            {
                slotsPassed++;
            }
        }

        _readPosition = position;
        _headSequence += (uint)n;
        Count -= n;
        _memory.AddInOrder(-n);

        var slots = SlotCount;
        for (var i = 0; i < slotsPassed; i++)
        {
            ReleaseIfEmpty((firstSlot + i) % slots);
        }

        if (Count == 0)
        {
            ReleaseIfEmpty(_readPosition / BlockSize);
        }

        return n;
    }

    /// <summary>Copies up to <c>destination.Length</c> in-order bytes out without consuming them; returns how many.</summary>
    public int Peek(Span<byte> destination)
    {
        var n = Math.Min(destination.Length, Count);
        var position = _readPosition;
        var copied = 0;
        while (copied < n)
        {
            var slot = position / BlockSize;
            var chunk = Math.Min(n - copied, SlotEnd(slot) - position);
            _blocks![slot].AsSpan(position - (slot * BlockSize), chunk).CopyTo(destination[copied..]);
            copied += chunk;
            position = Advance(position, chunk);
        }

        return n;
    }

    /// <summary>
    /// A new size for the ring, taken only while it holds nothing (the ring's layout depends on it); false otherwise.
    /// </summary>
    public bool TryResize(int capacity)
    {
        if (Count > 0 || RangeCount > 0)
        {
            return false;
        }

        ReleaseEmptySlots();
        if (BlocksHeld > 0)
        {
            return false;
        }

        _capacity = capacity;
        _readPosition = 0;
        _blocks = null;
        return true;
    }

    /// <summary>
    /// Drops every out-of-order range and the blocks only they used; returns the bytes dropped. They were never
    /// acknowledged cumulatively; if they were SACKed this is reneging, which RFC 2018 §8 permits (the sender keeps
    /// SACKed data until it is cumulatively acknowledged).
    /// </summary>
    public int PruneOutOfOrder()
    {
        var pruned = OutOfOrderBytes;
        if (RangeCount == 0)
        {
            return 0;
        }

        RangeCount = 0;
        RecountOutOfOrder();
        ReleaseEmptySlots();
        return pruned;
    }

    /// <summary>Start of the rightmost out-of-order range; only when <see cref="RangeCount"/> &gt; 0.</summary>
    public uint LastRangeStart => _rangeStart![RangeCount - 1];

    /// <summary>Drops the rightmost out-of-order range (the data furthest from RCV.NXT, needed last) and the blocks only it used; returns the bytes dropped.</summary>
    public int PruneLastRange()
    {
        var before = OutOfOrderBytes;
        RangeCount--;
        RecountOutOfOrder();
        ReleaseEmptySlots();
        return before - OutOfOrderBytes;
    }

    /// <summary>Forgets every byte held (connection reset or aborted); every block goes back to the pool.</summary>
    public void Clear()
    {
        _memory.AddInOrder(-Count);
        Count = 0;
        RangeCount = 0;
        RecountOutOfOrder();
        _readPosition = 0;
        ReleaseEmptySlots();
    }

    private int RingPosition(int logicalOffset) => (int)(((long)_readPosition + logicalOffset) % _capacity);

    private int Advance(int position, int by)
    {
        position += by;
        return position == _capacity ? 0 : position;
    }

    private int SlotEnd(int slot) => Math.Min((slot + 1) * BlockSize, _capacity);

    private byte[] BlockAt(int slot)
    {
        _blocks ??= _memory.Pool.RentTable(SlotCount);
        if (_blocks[slot] is { } block)
        {
            return block;
        }

        block = _memory.Rent();
        _blocks[slot] = block;
        BlocksHeld++;
        return block;
    }

    private void CopyIntoRing(int logicalOffset, ReadOnlySpan<byte> payload)
    {
        var position = RingPosition(logicalOffset);
        while (!payload.IsEmpty)
        {
            var slot = position / BlockSize;
            var chunk = Math.Min(payload.Length, SlotEnd(slot) - position);
            payload[..chunk].CopyTo(BlockAt(slot).AsSpan(position - (slot * BlockSize)));
            payload = payload[chunk..];
            position = Advance(position, chunk);
        }
    }

    private void ReleaseEmptySlots()
    {
        if (_blocks is null)
        {
            return;
        }

        for (var slot = 0; BlocksHeld > 0 && slot < _blocks!.Length; slot++)
        {
            ReleaseIfEmpty(slot);
        }
    }

    /// <summary>Gives a slot's block back when no unread in-order byte and no out-of-order range lies in it.</summary>
    private void ReleaseIfEmpty(int slot)
    {
        if (_blocks?[slot] is not { } block)
        {
            return;
        }

        // The slot's ring positions as offsets from the read position: one interval, or two when the read position is inside it.
        var slotStart = slot * BlockSize;
        var slotEnd = SlotEnd(slot);
        int firstStart, firstEnd, secondStart, secondEnd;
        if (_readPosition >= slotStart && _readPosition < slotEnd)
        {
            (firstStart, firstEnd) = (0, slotEnd - _readPosition);
            (secondStart, secondEnd) = (_capacity - (_readPosition - slotStart), _capacity);
        }
        else
        {
            firstStart = (slotStart - _readPosition + _capacity) % _capacity;
            (firstEnd, secondStart, secondEnd) = (firstStart + (slotEnd - slotStart), 0, 0);
        }

        if (Overlaps(firstStart, firstEnd, secondStart, secondEnd, 0, Count))
        {
            return;
        }

        for (var i = 0; i < RangeCount; i++)
        {
            var start = SequenceNumber.Diff(_rangeStart![i], _headSequence);
            var end = SequenceNumber.Diff(_rangeEnd![i], _headSequence);
            if (Overlaps(firstStart, firstEnd, secondStart, secondEnd, start, end))
            {
                return;
            }
        }

        _blocks[slot] = null;
        BlocksHeld--;
        _memory.Return(block);
        if (BlocksHeld == 0)
        {
            _memory.Pool.ReturnTable(_blocks);
            _blocks = null;
        }
    }

    private static bool Overlaps(int firstStart, int firstEnd, int secondStart, int secondEnd, int start, int end) =>
        start < end && ((firstStart < end && start < firstEnd) || (secondStart < end && start < secondEnd));

    private void RecountOutOfOrder()
    {
        var bytes = 0;
        for (var i = 0; i < RangeCount; i++)
        {
            bytes += SequenceNumber.Diff(_rangeEnd![i], _rangeStart![i]);
        }

        _memory.AddOutOfOrder(bytes - OutOfOrderBytes);
        OutOfOrderBytes = bytes;
    }

    // Ranges are kept sorted and disjoint (non-adjacent ranges merged on insert).
    private bool TryAddRange(uint start, uint end)
    {
        _rangeStart ??= new uint[_maxRanges];
        _rangeEnd ??= new uint[_maxRanges];
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
        while (absorbed < RangeCount && SequenceNumber.Le(_rangeStart![absorbed], end))
        {
            end = SequenceNumber.Max(end, _rangeEnd![absorbed]);
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

        Array.Copy(_rangeStart!, index + count, _rangeStart!, index, RangeCount - index - count);
        Array.Copy(_rangeEnd!, index + count, _rangeEnd!, index, RangeCount - index - count);
        RangeCount -= count;
    }
}
