using System.Globalization;
using Vso.MemoryPinning;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The transport's pinned blocks by size class: class 0 is the pool Kestrel also gets (<c>Vso:Pinning:BlockSize</c>),
/// class k holds blocks of that size times 2^k, made on first use and sharing class 0's byte counters. A
/// <see cref="System.IO.Pipelines.PipeWriter"/> must return at least the size asked for, so a write hint above the
/// block size rents from a larger class instead of being clamped. A range's host token carries its class in the high
/// word and its block id in the low one, so the send host validates every range against the pool it came from.
/// </summary>
internal sealed class PinnedBlockClasses : IDisposable
{
    // Class 18 of 4 KiB blocks is 1 GiB: larger hints are refused.
    private const int MaxBlockBytes = 1 << 30;

    private readonly Lock _gate = new();
    private readonly PinnedBlockPool[] _classes;
    private bool _disposed;

    public PinnedBlockClasses(PinnedBlockPool baseClass)
    {
        var count = 1;
        for (long size = baseClass.BlockSize; size * 2 <= MaxBlockBytes; size *= 2)
        {
            count++;
        }

        _classes = new PinnedBlockPool[count];
        _classes[0] = baseClass;
    }

    /// <summary>Class 0, the pool Kestrel rents its own buffers from.</summary>
    public PinnedBlockPool Base => _classes[0];

    /// <summary>Rents a block of at least <paramref name="sizeHint"/> bytes from the smallest class that holds it.</summary>
    public BlockRef Rent(int sizeHint)
    {
        var index = 0;
        var size = (long)Base.BlockSize;
        while (size < sizeHint)
        {
            size *= 2;
            index++;
            if (index >= _classes.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(sizeHint), sizeHint, string.Create(CultureInfo.InvariantCulture, $"The Vso transport writes at most {MaxBlockBytes} bytes through one buffer."));
            }
        }

        return new BlockRef(Class(index).Rent(), index);
    }

    /// <summary>The pool of a host token's class; a class never made (or out of range) is a stale token.</summary>
    public PinnedBlockPool ForToken(long hostToken)
    {
        var index = hostToken >> 32;
        var pool = (ulong)index < (ulong)_classes.Length ? Volatile.Read(ref _classes[index]) : null;
        return pool ?? throw new StaleDescriptorException(string.Create(CultureInfo.InvariantCulture, $"Send descriptor refused: its host token 0x{hostToken:x} names block class {index}, which holds no block. No memory was read."));
    }

    public static long HostToken(int classIndex, int blockId) => ((long)classIndex << 32) | (uint)blockId;

    public static int BlockId(long hostToken) => (int)(hostToken & 0xFFFF_FFFF);

    /// <summary>Every class gives back the slabs it did not use since the last call (<see cref="PinnedBlockPool.TrimExcess"/>).</summary>
    public long TrimExcess()
    {
        long freed = 0;
        for (var i = 0; i < _classes.Length; i++)
        {
            if (Volatile.Read(ref _classes[i]) is { } pool)
            {
                freed += pool.TrimExcess();
            }
        }

        return freed;
    }

    /// <summary>Frees the larger classes; class 0 belongs to the transport factory.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            for (var i = 1; i < _classes.Length; i++)
            {
                _classes[i]?.Dispose();
            }
        }
    }

    private PinnedBlockPool Class(int index)
    {
        if (Volatile.Read(ref _classes[index]) is { } pool)
        {
            return pool;
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_classes[index] is null)
            {
                var blockSize = Base.BlockSize << index;
                var options = new PinnedBlockPoolOptions { BlockSize = blockSize, SlabSize = Math.Max(Base.SlabSize, blockSize), Mlock = Base.Mlock };
#pragma warning disable CA2000 // Owned by _classes: Dispose disposes every class made.
                Volatile.Write(ref _classes[index], new PinnedBlockPool(options, sharesCountersWith: Base));
#pragma warning restore CA2000
            }

            return _classes[index];
        }
    }
}
