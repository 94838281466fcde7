namespace Vso.MemoryPinning;

/// <summary>
/// The active leases of one owner, without a lock or a dictionary: each lease is a slot whose stamp is odd while it is
/// active. Its token names the slot and the stamp; ending it flips the stamp once with a compare-and-swap, so ending a
/// lease twice (or a stale copy of it) finds another stamp and does nothing. Free slots form a lock-free stack (tagged
/// head against ABA); slots live in chunks that never move, added under a lock only when every slot is in use.
/// </summary>
/// <typeparam name="T">What a lease is on (a pin, a pool slot).</typeparam>
internal sealed class LeaseTable<T>
    where T : class
{
    private const int ChunkBits = 10;
    private const int ChunkSize = 1 << ChunkBits;
    private const int MaxChunks = 4096; // 4M leases active at once

    private readonly Chunk?[] _chunks = new Chunk?[MaxChunks];
    private readonly Lock _growGate = new();
    private int _chunkCount;

    // (tag << 32) | (index + 1) of the top free slot; index + 1 == 0: none free.
    private long _freeHead;

    /// <summary>Registers a lease on <paramref name="target"/> of <paramref name="length"/> bytes; returns its token.</summary>
    public long Add(T target, int length)
    {
        var index = Pop();
        var chunk = _chunks[index >> ChunkBits]!;
        var i = index & (ChunkSize - 1);
        chunk.Target[i] = target;
        chunk.Length[i] = length;

        // Odd from now on: active. Interlocked is a full fence, so a remover that sees this stamp sees target and length.
        var stamp = Interlocked.Increment(ref chunk.Stamp[i]);
        return ((long)(uint)stamp << 32) | (uint)index;
    }

    /// <summary>Ends the lease of <paramref name="token"/> if it is still active; false if it already ended (or never was).</summary>
    public bool TryRemove(long token, out T? target, out int length)
    {
        target = null;
        length = 0;
        var index = (int)(uint)token;
        var stamp = (int)(token >>> 32);
        if ((stamp & 1) == 0 || index < 0 || (index >> ChunkBits) >= Volatile.Read(ref _chunkCount))
        {
            return false;
        }

        var chunk = _chunks[index >> ChunkBits]!;
        var i = index & (ChunkSize - 1);
        if (Interlocked.CompareExchange(ref chunk.Stamp[i], stamp + 1, stamp) != stamp)
        {
            return false;
        }

        target = chunk.Target[i];
        length = chunk.Length[i];
        chunk.Target[i] = null;
        Push(index);
        return true;
    }

    private int Pop()
    {
        while (true)
        {
            var head = Volatile.Read(ref _freeHead);
            var top = (int)(uint)head - 1;
            if (top < 0)
            {
                Grow();
                continue;
            }

            var next = _chunks[top >> ChunkBits]!.Next[top & (ChunkSize - 1)];
            var tagged = (((head >>> 32) + 1) << 32) | (uint)next;
            if (Interlocked.CompareExchange(ref _freeHead, tagged, head) == head)
            {
                return top;
            }
        }
    }

    private void Push(int index)
    {
        var chunk = _chunks[index >> ChunkBits]!;
        while (true)
        {
            var head = Volatile.Read(ref _freeHead);
            chunk.Next[index & (ChunkSize - 1)] = (int)(uint)head;
            var tagged = (((head >>> 32) + 1) << 32) | (uint)(index + 1);
            if (Interlocked.CompareExchange(ref _freeHead, tagged, head) == head)
            {
                return;
            }
        }
    }

    private void Grow()
    {
        lock (_growGate)
        {
            if ((uint)Volatile.Read(ref _freeHead) != 0)
            {
                return; // a slot was freed, or another thread grew the table
            }

            var count = _chunkCount;
            if (count == MaxChunks)
            {
                throw new InvalidOperationException($"More than {MaxChunks * ChunkSize} leases are active at once: leases are not being ended.");
            }

            _chunks[count] = new Chunk();
            Volatile.Write(ref _chunkCount, count + 1);
            for (var i = ChunkSize - 1; i >= 0; i--)
            {
                Push((count * ChunkSize) + i);
            }
        }
    }

    private sealed class Chunk
    {
        public readonly int[] Stamp = new int[ChunkSize];
        public readonly T?[] Target = new T?[ChunkSize];
        public readonly int[] Length = new int[ChunkSize];
        public readonly int[] Next = new int[ChunkSize];
    }
}
