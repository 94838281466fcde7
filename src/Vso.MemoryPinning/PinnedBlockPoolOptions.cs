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
}
