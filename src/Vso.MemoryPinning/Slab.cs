using System.Runtime.InteropServices;

namespace Vso.MemoryPinning;

/// <summary>
/// A page-aligned native allocation that blocks are carved from. Native memory is outside the GC heap,
/// so no collection, compaction included, ever moves it; no GCHandle is needed.
/// </summary>
internal sealed class Slab
{
    private Slab(nint address, long size)
    {
        Address = address;
        Size = size;
    }

    public nint Address { get; }

    public long Size { get; }

    /// <summary>Page-rounded bytes held locked through the <see cref="PageLocker"/>, 0 if not locked.</summary>
    public long LockedBytes { get; set; }

    public bool IsFreed { get; private set; }

    public static unsafe Slab Allocate(long size, int alignment)
    {
        // Large slabs (>= M_MMAP_THRESHOLD, 128 KiB by default) come straight from mmap and go back to the
        // kernel on free, so a stale read after the pool is gone faults rather than reading someone else's data.
        var address = (nint)NativeMemory.AlignedAlloc((nuint)size, (nuint)alignment);
        return new Slab(address, size);
    }

    public unsafe void Free()
    {
        if (!IsFreed)
        {
            IsFreed = true;
            NativeMemory.AlignedFree((void*)Address);
        }
    }
}
