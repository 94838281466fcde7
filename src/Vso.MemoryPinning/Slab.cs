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
        // Page alignment: mlock(2) works on whole pages, and a block of one page then never shares a page.
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
