namespace Vso.Transport.Engine;

/// <summary>
/// Frames one shard hands to another (a segment whose flow the other owns, an ARP packet every shard learns from): a
/// bounded single-producer single-consumer ring of frame copies, one per ordered pair of shards, so neither side takes a
/// lock. The producer is the sending shard's engine thread, the consumer the receiving one's. A full ring drops the frame
/// (the caller counts it), as a NIC queue does: TCP repairs the loss. A slot's buffer is allocated the first time the slot
/// is used and kept, so a busy pair allocates nothing per frame.
/// </summary>
internal sealed class ShardHandoverQueue
{
    private readonly byte[]?[] _slots;
    private readonly int[] _lengths;
    private readonly int _mask;
    private readonly int _maxFrameLength;
    private long _head; // next to read; written by the consumer only
    private long _tail; // next to write; written by the producer only

    public ShardHandoverQueue(int capacity, int maxFrameLength)
    {
        if (capacity <= 0 || (capacity & (capacity - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "A power of two.");
        }

        _slots = new byte[]?[capacity];
        _lengths = new int[capacity];
        _mask = capacity - 1;
        _maxFrameLength = maxFrameLength;
    }

    public int Capacity => _slots.Length;

    public bool IsEmpty => Volatile.Read(ref _head) == Volatile.Read(ref _tail);

    /// <summary>Producer: copies <paramref name="frame"/> in; false when the ring is full or the frame too long.</summary>
    public bool TryEnqueue(ReadOnlySpan<byte> frame)
    {
        var tail = _tail;
        if (tail - Volatile.Read(ref _head) >= _slots.Length || frame.Length > _maxFrameLength)
        {
            return false;
        }

        var index = (int)(tail & _mask);
        var slot = _slots[index] ??= new byte[_maxFrameLength];
        frame.CopyTo(slot);
        _lengths[index] = frame.Length;
        Volatile.Write(ref _tail, tail + 1); // publishes the copy
        return true;
    }

    /// <summary>Consumer: hands up to <paramref name="maxFrames"/> frames to <paramref name="shard"/>'s interface; returns how many.</summary>
    public int Drain(NetworkStack shard, int maxFrames)
    {
        var head = _head;
        var tail = Volatile.Read(ref _tail);
        var drained = 0;
        while (head < tail && drained < maxFrames)
        {
            var index = (int)(head & _mask);
            try
            {
                shard.Interface.OnHandedOverFrame(_slots[index].AsSpan(0, _lengths[index]));
            }
            finally
            {
                head++;
                Volatile.Write(ref _head, head); // frees the slot for the producer
            }

            drained++;
        }

        return drained;
    }
}
