using System.Buffers;
using System.Globalization;

namespace Vso.MemoryPinning;

/// <summary>
/// A <see cref="MemoryPool{T}"/> of fixed-size blocks carved from page-aligned native slabs that the GC
/// never moves, optionally mlocked so they are never swapped. The TCP sender keeps descriptors
/// (block id, generation, address, length) over these blocks and the host validates each one with
/// <see cref="Validate(int, long, nint, int)"/> or <see cref="Lease(int, long, nint, int)"/> before any
/// byte is read, so a descriptor that outlived its block is refused instead of read.
/// </summary>
/// <remarks>
/// Thread-safe: rent, return, validate and lease may be called from any thread. Rent, return and validate take one short
/// lock; taking and ending a lease (once per gathered piece of a frame, on the engine thread) take none: a slot's
/// generation, state and lease count share one word changed by compare-and-swap, and the leases themselves live in a
/// <see cref="LeaseTable{T}"/>.
/// <para>
/// Dispose: new rentals fail at once. Slabs are freed when no block is rented or leased any more: at
/// Dispose if none is, otherwise when the last block is returned and its last lease ends (deferred, not
/// thrown, so that a connection still draining at shutdown keeps valid memory). A block never returned
/// keeps its slabs allocated.
/// </para>
/// </remarks>
public sealed class PinnedBlockPool : MemoryPool<byte>, IPinLeaseOwner
{
    private readonly Lock _gate = new();
    private readonly List<Slab> _slabs = [];
    private readonly List<Slot> _slots = [];
    private readonly Stack<Slot> _free = new();
    private readonly LeaseTable<Slot> _leases = new();
    private readonly Stack<int> _retiredRanges = new(); // first slot id of each trimmed slab's run of slots, reused by AddSlab
    private Slot[] _slotTable = []; // _slots as an array, republished (never changed in place) when a slab is added
    private readonly PageLocker _locker;
    private readonly int _blockSize;
    private readonly int _slabSize;
    private readonly int _pageSize;
    private readonly long? _maxBytes;
    private readonly bool _mlock;
    private nint _region;            // the contiguous region (PinnedBlockPoolOptions.ContiguousBytes), 0 if none or freed
    private readonly long _regionLength;
    private long _regionUsed;        // bytes of the region already made into slabs
    private long _allocatedBytes;
    private long _lastGeneration;
    private int _outstanding; // rented or return-pending blocks
    private bool _disposed;

    public PinnedBlockPool()
        : this(new PinnedBlockPoolOptions())
    {
    }

    public PinnedBlockPool(PinnedBlockPoolOptions options)
        : this(options, metrics: null)
    {
    }

    /// <summary>
    /// A pool whose byte counters (<see cref="PinnedBytes"/>, <see cref="LockedBytes"/>, <see cref="LeasedBytes"/>) are
    /// those of <paramref name="sharesCountersWith"/>: several pools, for example blocks of several sizes, read as one.
    /// </summary>
    public PinnedBlockPool(PinnedBlockPoolOptions options, PinnedBlockPool sharesCountersWith)
        : this(options, (sharesCountersWith ?? throw new ArgumentNullException(nameof(sharesCountersWith))).Metrics)
    {
    }

    internal PinnedBlockPool(PinnedBlockPoolOptions options, PinningMetrics? metrics)
        : this(options, metrics, PageLocker.Process, Environment.SystemPageSize)
    {
    }

    internal PinnedBlockPool(PinnedBlockPoolOptions options, PinningMetrics? metrics, PageLocker locker, int pageSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        var blockSize = options.BlockSize;
        if (blockSize <= 0 || (blockSize & (blockSize - 1)) != 0)
        {
            throw new ArgumentException($"PinnedBlockPoolOptions.BlockSize must be a positive power of two, not {blockSize}.", nameof(options));
        }

        var unit = Math.Max(blockSize, pageSize);
        if (options.SlabSize <= 0 || options.SlabSize % unit != 0)
        {
            throw new ArgumentException($"PinnedBlockPoolOptions.SlabSize must be a positive multiple of the page size ({pageSize}) and of BlockSize ({blockSize}), not {options.SlabSize}.", nameof(options));
        }

        if (options.MaxBytes is { } max && max < blockSize)
        {
            throw new ArgumentException($"PinnedBlockPoolOptions.MaxBytes must be at least BlockSize ({blockSize}), not {max}.", nameof(options));
        }

        if (options.ContiguousBytes < 0 || options.ContiguousBytes % unit != 0)
        {
            throw new ArgumentException($"PinnedBlockPoolOptions.ContiguousBytes must be 0 or a positive multiple of the page size ({pageSize}) and of BlockSize ({blockSize}), not {options.ContiguousBytes}.", nameof(options));
        }

        _blockSize = blockSize;
        _slabSize = options.SlabSize;
        if (options.ContiguousBytes > 0)
        {
            // Reserved now, touched (and committed) only as slabs are carved from it or a device registers it.
            _regionLength = options.ContiguousBytes;
            _region = Slab.AllocateRegion(_regionLength, pageSize);
        }

        _maxBytes = options.MaxBytes;
        _mlock = options.Mlock;
        _pageSize = pageSize;
        _locker = locker;
        Metrics = metrics ?? new PinningMetrics();
    }

    public override int MaxBufferSize => _blockSize;

    public int BlockSize => _blockSize;

    public int SlabSize => _slabSize;

    public long? MaxBytes => _maxBytes;

    public bool Mlock => _mlock;

    internal PinningMetrics Metrics { get; }

    /// <summary>
    /// The contiguous region (<see cref="PinnedBlockPoolOptions.ContiguousBytes"/>), page-aligned; (0, 0) without one.
    /// Every block whose address lies inside it stays inside it; the region lives until the pool frees its slabs.
    /// </summary>
    internal (nint Address, long Length) ContiguousRegion => (_region, _region == 0 ? 0 : _regionLength);

    /// <summary>Bytes of rented blocks, of this pool and of the pools that share its counters.</summary>
    public long PinnedBytes => Metrics.PinnedBytes;

    /// <summary>Page-rounded bytes this pool (and those sharing its counters) holds locked with mlock(2).</summary>
    public long LockedBytes => Metrics.LockedBytes;

    /// <summary>Bytes covered by active <see cref="PinLease"/>s on this pool's blocks (and those sharing its counters).</summary>
    public long LeasedBytes => Metrics.LeasedBytes;

    /// <summary>Bytes of slabs allocated and not yet freed.</summary>
    public long AllocatedBytes
    {
        get
        {
            lock (_gate)
            {
                return _allocatedBytes;
            }
        }
    }

    /// <summary>Blocks rented, or returned but still leased.</summary>
    public int RentedBlocks
    {
        get
        {
            lock (_gate)
            {
                return _outstanding;
            }
        }
    }

    /// <summary>
    /// Rents one block of <see cref="BlockSize"/> bytes. Grows by a slab when no block is free; throws
    /// <see cref="InvalidOperationException"/> when <see cref="MaxBytes"/> is reached and
    /// <see cref="MemoryLockException"/> when locking a new slab fails.
    /// </summary>
    public override PinnedBlock Rent(int minBufferSize = -1)
    {
        if (minBufferSize > _blockSize)
        {
            throw new ArgumentOutOfRangeException(nameof(minBufferSize), minBufferSize, $"This pool's blocks are {_blockSize} bytes.");
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.Count == 0)
            {
                AddSlab();
            }

            var slot = _free.Pop();
            slot.Slab.Outstanding++;
            slot.Slab.Uses++;
            slot.Generation = ++_lastGeneration;
            Volatile.Write(ref slot.Word, Slot.Pack(slot.Generation, 0, SlotState.Rented));
            var block = new PinnedBlock(this, slot.Id, slot.Address, _blockSize, slot.Generation);
            slot.Current = block;
            _outstanding++;
            Metrics.AddPinned(_blockSize);
            return block;
        }
    }

    /// <summary>
    /// Returns the block of a descriptor if it is still rented under <paramref name="generation"/> and
    /// [address, address+length) lies inside it; otherwise throws <see cref="StaleDescriptorException"/>.
    /// Reads no byte. The answer holds only until the block is disposed: to read, take a
    /// <see cref="Lease(int, long, nint, int)"/>, which validates and holds the block in one step.
    /// </summary>
    public PinnedBlock Validate(int blockId, long generation, nint address, int length)
    {
        lock (_gate)
        {
            return CheckDescriptor(blockId, generation, address, length).Current!;
        }
    }

    internal PinnedBlock Validate(BlockToken token, nint address, int length) => Validate(token.BlockId, token.Generation, address, length);

    /// <summary>
    /// Validates a descriptor like <see cref="Validate(int, long, nint, int)"/> and leases its range: the block
    /// is not reused (its memory not handed to anyone else) until the lease is disposed, even if the block
    /// itself is disposed first.
    /// </summary>
    public PinLease Lease(int blockId, long generation, nint address, int length)
    {
        var table = Volatile.Read(ref _slotTable);
        if ((uint)blockId < (uint)table.Length && generation != 0)
        {
            var slot = table[blockId];
            var expected = Slot.Pack(generation, 0, SlotState.Rented);
            var offset = (long)address - slot.Address;
            var inRange = length >= 0 && offset >= 0 && offset <= _blockSize - length;
            while (inRange)
            {
                // Rented under this generation (the word holds its low 40 bits; the full one is checked too), below the
                // lease limit: one more lease, in one compare-and-swap with the state, so a return cannot slip between.
                var word = Volatile.Read(ref slot.Word);
                if ((word & ~Slot.LeaseMask) != expected || (word & Slot.LeaseMask) == Slot.LeaseMask
                    || Volatile.Read(ref slot.Generation) != generation)
                {
                    break;
                }

                if (Interlocked.CompareExchange(ref slot.Word, word + Slot.OneLease, word) == word)
                {
                    var token = _leases.Add(slot, length);
                    Metrics.AddLeased(length);
                    return new PinLease(this, address, length, token);
                }
            }
        }

        // Refused: say why, precisely, under the lock (never read).
        lock (_gate)
        {
            _ = CheckDescriptor(blockId, generation, address, length);
        }

        throw new InvalidOperationException($"Block {blockId} generation {generation} has {Slot.LeaseMask >> 2} leases already; leases are not being ended.");
    }

    internal PinLease Lease(BlockToken token, nint address, int length) => Lease(token.BlockId, token.Generation, address, length);

    /// <summary>Ends a lease. Each lease has its own token, so ending one twice does nothing.</summary>
    void IPinLeaseOwner.EndLease(nint address, int length, long token)
    {
        if (!_leases.TryRemove(token, out var slot, out var leased))
        {
            return;
        }

        Metrics.AddLeased(-leased);
        while (true)
        {
            var word = Volatile.Read(ref slot!.Word);
            var next = word - Slot.OneLease;
            if ((next & Slot.LeaseMask) == 0 && (SlotState)(word & Slot.StateMask) == SlotState.ReturnPending)
            {
                // The last lease on a block already given back: this thread alone takes it to Free and finishes the return.
                if (Interlocked.CompareExchange(ref slot.Word, (next & ~Slot.StateMask) | (long)SlotState.Free, word) == word)
                {
                    lock (_gate)
                    {
                        CompleteReturn(slot);
                    }

                    return;
                }

                continue;
            }

            if (Interlocked.CompareExchange(ref slot.Word, next, word) == word)
            {
                return;
            }
        }
    }

    internal void Return(PinnedBlock block)
    {
        lock (_gate)
        {
            if (!block.MarkReleased())
            {
                return;
            }

            var slot = _slots[block.Id];
            slot.Current = null;
            while (true)
            {
                var word = Volatile.Read(ref slot.Word);
                if ((word & Slot.LeaseMask) != 0)
                {
                    // Validate and Lease refuse it from now on, but a link may still be reading the leased range:
                    // the last EndLease finishes the return.
                    if (Interlocked.CompareExchange(ref slot.Word, (word & ~Slot.StateMask) | (long)SlotState.ReturnPending, word) == word)
                    {
                        break;
                    }

                    continue;
                }

                if (Interlocked.CompareExchange(ref slot.Word, (word & ~Slot.StateMask) | (long)SlotState.Free, word) == word)
                {
                    CompleteReturn(slot);
                    break;
                }
            }
        }
    }

    /// <summary>
    /// Frees the slabs with no block rented, and none rented or returned since the previous call, (the first slab is kept), so memory taken at a
    /// peak goes back to the system once the peak has passed; call it periodically. Returns the bytes freed.
    /// </summary>
    public long TrimExcess()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return 0;
            }

            long freed = 0;
            for (var i = _slabs.Count - 1; i > 0; i--)
            {
                var slab = _slabs[i];
                var idle = slab.Outstanding == 0 && slab.Uses == slab.UsesAtLastTrim;
                slab.UsesAtLastTrim = slab.Uses;
                if (!idle || slab.Size != _slabSize || slab.InRegion)
                {
                    continue;
                }

                freed += slab.Size;
                _slabs.RemoveAt(i);
                _retiredRanges.Push(slab.FirstSlotId);
                FreeSlab(slab);
            }

            if (freed > 0)
            {
                _allocatedBytes -= freed;

                // The free list loses the freed slabs' slots, keeping the others in their order.
                var kept = new Slot[_free.Count];
                var n = 0;
                while (_free.TryPop(out var slot))
                {
                    if (!slot.Slab.IsFreed)
                    {
                        kept[n++] = slot;
                    }
                }

                for (var i = n - 1; i >= 0; i--)
                {
                    _free.Push(kept[i]);
                }
            }

            return freed;
        }
    }

    protected override void Dispose(bool disposing)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (_outstanding == 0)
            {
                FreeSlabs();
            }
        }
    }

    private Slot CheckDescriptor(int blockId, long generation, nint address, int length)
    {
        if ((uint)blockId >= (uint)_slots.Count)
        {
            throw Stale(StaleDescriptorReason.UnknownBlock, blockId, generation, address, length, $"Stale descriptor refused: block {blockId} (generation {generation}) was never issued by this pool; no memory was read.");
        }

        var slot = _slots[blockId];
        if (slot.Generation != generation || generation == 0)
        {
            var now = slot.State == SlotState.Rented ? $"it is now rented again as generation {slot.Generation}" : "it is now free";
            var reason = slot.Generation > generation ? StaleDescriptorReason.Released : StaleDescriptorReason.GenerationMismatch;
            var what = slot.Generation > generation ? "was already released to the pool" : "was never rented under that generation";
            throw Stale(reason, blockId, generation, address, length, $"Stale descriptor refused: block {blockId} generation {generation} {what}; {now}. No memory was read.");
        }

        if (slot.State != SlotState.Rented)
        {
            throw Stale(StaleDescriptorReason.Released, blockId, generation, address, length, $"Stale descriptor refused: block {blockId} generation {generation} was already released to the pool. No memory was read.");
        }

        var offset = (long)address - slot.Address;
        if (length < 0 || offset < 0 || offset > _blockSize - length)
        {
            throw Stale(StaleDescriptorReason.OutOfRange, blockId, generation, address, length, string.Create(CultureInfo.InvariantCulture, $"Descriptor refused: range 0x{address:x}+{length} lies outside block {blockId} generation {generation} (0x{slot.Address:x}+{_blockSize}). No memory was read."));
        }

        return slot;
    }

    private static StaleDescriptorException Stale(StaleDescriptorReason reason, int blockId, long generation, nint address, int length, string message)
        => new(reason, blockId, generation, address, length, message);

    /// <summary>Under the lock, the slot's word already Free with no lease: back to the free list (or the slabs go).</summary>
    private void CompleteReturn(Slot slot)
    {
        _outstanding--;
        slot.Slab.Outstanding--;
        slot.Slab.Uses++;
        Metrics.AddPinned(-_blockSize);
        if (!_disposed)
        {
            _free.Push(slot);
        }
        else if (_outstanding == 0)
        {
            FreeSlabs();
        }
    }

    private void AddSlab()
    {
        long size = _slabSize;
        if (_maxBytes is { } max)
        {
            size = Math.Min(size, (max - _allocatedBytes) / _blockSize * _blockSize);
            if (size < _blockSize)
            {
                throw new InvalidOperationException(string.Create(
                    CultureInfo.InvariantCulture,
                    $"PinnedBlockPool limit reached: PinnedBlockPoolOptions.MaxBytes is {max} bytes, {_allocatedBytes} bytes are allocated and all {_outstanding} blocks of {_blockSize} bytes are rented. Return (dispose) blocks sooner or raise MaxBytes."));
            }
        }

        // Whole pages, so that no other allocation shares a page with a slab (mlock works on pages).
        var allocation = (size + _pageSize - 1) / _pageSize * _pageSize;
        Slab slab;
        if (_region != 0 && _regionLength - _regionUsed >= allocation)
        {
            slab = Slab.InContiguousRegion(_region + (nint)_regionUsed, allocation);
            _regionUsed += allocation;
        }
        else
        {
            slab = Slab.Allocate(allocation, _pageSize);
        }

        if (_mlock)
        {
            try
            {
                slab.LockedBytes = _locker.Lock(slab.Address, allocation);
            }
            catch
            {
                slab.Free();
                throw;
            }

            Metrics.AddLocked(slab.LockedBytes);
        }

        _slabs.Add(slab);
        _allocatedBytes += size;
        var count = (int)(size / _blockSize);
        int firstId;
        if (count == _slabSize / _blockSize && _retiredRanges.TryPop(out firstId))
        {
            // A trimmed slab's slot ids, so ids stay bounded however often the pool grows and shrinks; their generations
            // go on rising, so a descriptor of the old memory is still refused as released.
            for (var i = 0; i < count; i++)
            {
                var slot = _slots[firstId + i];
                slot.Address = slab.Address + (nint)((long)i * _blockSize);
                slot.Slab = slab;
            }
        }
        else
        {
            firstId = _slots.Count;
            for (var i = 0; i < count; i++)
            {
                _slots.Add(new Slot(firstId + i, slab.Address + (nint)((long)i * _blockSize), slab));
            }

            Volatile.Write(ref _slotTable, [.. _slots]);
        }

        slab.FirstSlotId = firstId;

        // Lowest address on top, so blocks are handed out in address order.
        for (var i = count - 1; i >= 0; i--)
        {
            _free.Push(_slots[firstId + i]);
        }
    }

    private void FreeSlabs()
    {
        _free.Clear();
        foreach (var slab in _slabs)
        {
            FreeSlab(slab);
        }

        _slabs.Clear();
        _allocatedBytes = 0;
        if (_region != 0)
        {
            Slab.FreeRegion(_region);
            _region = 0;
        }

        // Slots stay (state Free), so late descriptors are still refused as released rather than unknown.
    }

    private void FreeSlab(Slab slab)
    {
        if (slab.LockedBytes > 0)
        {
            _locker.Unlock(slab.Address, slab.Size);
            Metrics.AddLocked(-slab.LockedBytes);
            slab.LockedBytes = 0;
        }

        slab.Free();
    }

    private enum SlotState
    {
        Free,
        Rented,
        ReturnPending,
    }

    private sealed class Slot(int id, nint address, Slab slab)
    {
        public const long StateMask = 3;
        public const long OneLease = 4;
        public const long LeaseMask = 0x3FFFFFL << 2; // 22 bits of lease count

        /// <summary>Generation (low 40 bits) &lt;&lt; 24 | leases &lt;&lt; 2 | state: changed only by compare-and-swap or under the lock.</summary>
        public long Word;

        /// <summary>The full generation, written under the lock at rent, before <see cref="Word"/>.</summary>
        public long Generation;

        public int Id { get; } = id;

        /// <summary>Changes only when a trimmed slab's slots are given a new slab (under the lock, while Free).</summary>
        public nint Address { get; set; } = address;

        public Slab Slab { get; set; } = slab;

        public SlotState State => (SlotState)(Volatile.Read(ref Word) & StateMask);

        public int LeaseCount => (int)((Volatile.Read(ref Word) & LeaseMask) >> 2);

        public PinnedBlock? Current { get; set; }

        public static long Pack(long generation, int leases, SlotState state) => (generation << 24) | ((long)leases << 2) | (long)state;
    }
}
