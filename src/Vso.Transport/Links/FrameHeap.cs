namespace Vso.Transport.Links;

/// <summary>A frame held in a pooled buffer until <see cref="DueMicroseconds"/>.</summary>
internal struct HeldFrame
{
    public byte[] Buffer;
    public int Length;
    public long DueMicroseconds;
    public long Sequence;
}

/// <summary>
/// Binary min-heap of held frames ordered by due time, then by insertion order, so frames due at the
/// same microsecond leave in the order they arrived (FIFO). The backing array only grows; in steady
/// state pushing and popping allocate nothing.
/// </summary>
internal sealed class FrameHeap
{
    private HeldFrame[] _items = new HeldFrame[64];
    private long _nextSequence;

    public int Count { get; private set; }

    /// <summary>Due time of the next frame, or <see cref="long.MaxValue"/> when empty.</summary>
    public long EarliestDue => Count == 0 ? long.MaxValue : _items[0].DueMicroseconds;

    public void Push(byte[] buffer, int length, long dueMicroseconds)
    {
        if (Count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }

        var item = new HeldFrame { Buffer = buffer, Length = length, DueMicroseconds = dueMicroseconds, Sequence = _nextSequence++ };
        var i = Count++;
        while (i > 0)
        {
            var parent = (i - 1) >> 1;
            if (!Less(in item, in _items[parent]))
            {
                break;
            }

            _items[i] = _items[parent];
            i = parent;
        }

        _items[i] = item;
    }

    public HeldFrame Pop()
    {
        if (Count == 0)
        {
            throw new InvalidOperationException("The frame heap is empty.");
        }

        var top = _items[0];
        var last = _items[--Count];
        _items[Count] = default;
        if (Count > 0)
        {
            var i = 0;
            while (true)
            {
                var child = (2 * i) + 1;
                if (child >= Count)
                {
                    break;
                }

                if (child + 1 < Count && Less(in _items[child + 1], in _items[child]))
                {
                    child++;
                }

                if (!Less(in _items[child], in last))
                {
                    break;
                }

                _items[i] = _items[child];
                i = child;
            }

            _items[i] = last;
        }

        return top;
    }

    /// <summary>Returns every held buffer to <paramref name="pool"/> and empties the heap.</summary>
    public void Clear(FrameBufferPool pool)
    {
        for (var i = 0; i < Count; i++)
        {
            pool.Return(_items[i].Buffer);
            _items[i] = default;
        }

        Count = 0;
    }

    private static bool Less(in HeldFrame a, in HeldFrame b) =>
        a.DueMicroseconds < b.DueMicroseconds || (a.DueMicroseconds == b.DueMicroseconds && a.Sequence < b.Sequence);
}
