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

    /// <summary>Id of the slab's first slot in its pool; its slots' ids follow.</summary>
    public int FirstSlotId { get; set; }

    /// <summary>Blocks of this slab rented, or returned and still leased (under the pool's lock).</summary>
    public int Outstanding { get; set; }

    /// <summary>Rentals and returns of this slab's blocks ever, and their count at the pool's last trim: equal means unused since then.</summary>
    public long Uses { get; set; }

    public long UsesAtLastTrim { get; set; }

    /// <summary>Carved from the pool's contiguous region: never trimmed, and its memory goes with the region, not with it.</summary>
    public bool InRegion { get; private init; }

    /// <summary>A slab over part of the pool's contiguous region (which the pool allocated and frees itself).</summary>
    public static Slab InContiguousRegion(nint address, long size) => new(address, size) { InRegion = true };

    public static unsafe Slab Allocate(long size, int alignment)
    {
        // Page alignment: mlock(2) works on whole pages, and a block of one page then never shares a page.
        var address = (nint)NativeMemory.AlignedAlloc((nuint)size, (nuint)alignment);
        return new Slab(address, size);
    }

    /// <summary>The pool's contiguous region: one page-aligned allocation that slabs are then carved from.</summary>
    public static unsafe nint AllocateRegion(long size, int alignment) => (nint)NativeMemory.AlignedAlloc((nuint)size, (nuint)alignment);

    public static unsafe void FreeRegion(nint address) => NativeMemory.AlignedFree((void*)address);

    public unsafe void Free()
    {
        if (!IsFreed)
        {
            IsFreed = true;
            if (!InRegion)
            {
                NativeMemory.AlignedFree((void*)Address);
            }
        }
    }
}
