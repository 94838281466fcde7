namespace Vso.MemoryPinning;

/// <summary>Options of a <see cref="PinnedBlockPool"/>. Defaults suit a TCP send path.</summary>
public sealed class PinnedBlockPoolOptions
{
    /// <summary>
    /// Size of every block in bytes; a power of two. Default 4096: one page, so a block never shares a
    /// page with another block and a block maps onto one AF_XDP-sized frame payload.
    /// </summary>
    public int BlockSize { get; set; } = 4096;

    /// <summary>
    /// Bytes allocated at a time when the pool grows; a multiple of the page size and of
    /// <see cref="BlockSize"/>. Default 256 KiB (64 blocks of 4 KiB).
    /// </summary>
    public int SlabSize { get; set; } = 256 * 1024;

    /// <summary>
    /// Upper bound of the slab bytes the pool may allocate, or null for no bound (default). Renting a
    /// block when all allowed bytes are rented throws <see cref="InvalidOperationException"/>.
    /// </summary>
    public long? MaxBytes { get; set; }

    /// <summary>
    /// When true, every slab is <c>mlock</c>ed (mlock(2)) as it is allocated, so its pages are never
    /// swapped out. Subject to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK. Default false.
    /// </summary>
    public bool Mlock { get; set; }

    /// <summary>
    /// Bytes reserved when the pool is made as one contiguous, page-aligned allocation, from which the pool takes its
    /// first slabs (in address order) before it allocates separate ones. A device can then register that one range
    /// whole, as an AF_XDP link does with its UMEM, and read the blocks inside it in place. The region is never trimmed
    /// and is freed with the pool. A multiple of the page size and of <see cref="BlockSize"/>; default 0 (none).
    /// </summary>
    public long ContiguousBytes { get; set; }
}
