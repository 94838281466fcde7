using System.Runtime;

namespace Vso.MemoryPinning.Tests;

public sealed class ForeignMemoryPinnerTests
{
    [Fact]
    public unsafe void Pin_gives_the_stable_address_of_the_callers_bytes()
    {
        var pinner = new ForeignMemoryPinner();
        var array = new byte[1000];
        array[10] = 42;
        using var pin = pinner.Pin(array.AsMemory(10, 500));

        fixed (byte* p = &array[10])
        {
            Assert.Equal((nint)p, pin.Address);
        }

        Assert.Equal(500, pin.Length);
        Assert.Equal(42, *(byte*)pin.Address);
        Assert.True(pin.IsPinned);
        Assert.Equal(500, pinner.Metrics.PinnedBytes);
    }

    [Fact]
    public unsafe void Pinned_array_does_not_move_under_compaction()
    {
        var pinner = new ForeignMemoryPinner();
        var garbage = Enumerable.Range(0, 1000).Select(i => new byte[64]).ToList();
        var array = new byte[256];
        array[0] = 9;
        garbage.Clear();
        using var pin = pinner.Pin(array);
        var address = pin.Address;

        GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);

        fixed (byte* p = array)
        {
            Assert.Equal(address, (nint)p);
        }

        Assert.Equal(9, *(byte*)pin.Address);
    }

    [Fact]
    public void Lease_lifecycle_unpins_only_when_released_and_no_lease_is_active()
    {
        var pinner = new ForeignMemoryPinner();
        var pin = pinner.Pin(new byte[1000]);
        var first = pin.Lease(0, 100);
        var second = pin.Lease(900, 100);

        Assert.Equal(pin.Address + 900, second.Address);
        Assert.Equal(2, pin.ActiveLeases);
        Assert.Equal(200, pinner.Metrics.LeasedBytes);
        Assert.Equal(1000, pinner.Metrics.PinnedBytes);

        pin.Dispose();
        Assert.True(pin.IsReleased);
        Assert.True(pin.IsPinned); // leases still active
        Assert.Equal(1, pinner.ActivePins);
        Assert.Throws<ObjectDisposedException>(() => pin.Lease(0, 1));

        first.Dispose();
        first.Dispose(); // ending a lease twice does nothing
        Assert.True(pin.IsPinned);
        Assert.Equal(1, pin.ActiveLeases);
        Assert.Equal(100, pinner.Metrics.LeasedBytes);

        second.Dispose();
        Assert.False(pin.IsPinned);
        Assert.Equal(0, pinner.ActivePins);
        Assert.Equal(0, pinner.Metrics.LeasedBytes);
        Assert.Equal(0, pinner.Metrics.PinnedBytes);

        pin.Dispose(); // releasing twice does nothing
        Assert.Equal(0, pinner.Metrics.PinnedBytes);
    }

    [Fact]
    public void Release_without_leases_unpins_at_once()
    {
        var pinner = new ForeignMemoryPinner();
        var pin = pinner.Pin(new byte[10]);
        pin.Lease(0, 10).Dispose();
        pin.Dispose();
        Assert.False(pin.IsPinned);
        Assert.Equal(0, pinner.Metrics.PinnedBytes);
    }

    [Fact]
    public void Lease_outside_the_pinned_range_is_refused()
    {
        var pinner = new ForeignMemoryPinner();
        using var pin = pinner.Pin(new byte[10]);
        Assert.Throws<ArgumentOutOfRangeException>(() => pin.Lease(5, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => pin.Lease(-1, 1));
        Assert.Throws<ArgumentException>(() => pinner.Pin(ReadOnlyMemory<byte>.Empty));
    }

    [Fact]
    public void Pool_block_memory_can_be_pinned_as_foreign_memory()
    {
        using var pool = new PinnedBlockPool();
        using var block = pool.Rent();
        var pinner = new ForeignMemoryPinner();
        using var pin = pinner.Pin(block.Memory[8..]);
        Assert.Equal(block.Address + 8, pin.Address);
    }

    [Fact]
    public void Foreign_pins_with_mlock_share_pages_through_the_locker()
    {
        var sys = new FakeLockSyscalls();
        var locker = new PageLocker(sys, 4096);
        var pinner = new ForeignMemoryPinner(mlock: true, new PinningMetrics(), locker);
        var array = GC.AllocateArray<byte>(8192, pinned: true);

        var a = pinner.Pin(array.AsMemory(0, 100));
        var b = pinner.Pin(array.AsMemory(100, 100)); // most likely the same page as a
        var expectedPages = locker.LockedPages;
        Assert.InRange(expectedPages, 1, 2);
        Assert.Equal(expectedPages, sys.Mlocks.Sum(m => (int)m.Length / 4096));

        var lease = b.Lease(0, 50);
        a.Dispose();
        b.Dispose();
        Assert.True(locker.LockedBytes > 0); // the lease holds b's pages
        Assert.Equal(100, pinner.Metrics.PinnedBytes);

        lease.Dispose();
        Assert.Equal(0, locker.LockedBytes);
        Assert.Equal(0, pinner.Metrics.LockedBytes);
        Assert.Equal(0, pinner.Metrics.PinnedBytes);
        Assert.Equal(sys.Mlocks.Sum(m => (long)m.Length), sys.Munlocks.Sum(m => (long)m.Length));
    }

    [Fact]
    public void Leases_from_many_threads_balance_to_zero()
    {
        var pinner = new ForeignMemoryPinner();
        using var pin = pinner.Pin(new byte[4096]);
        Parallel.For(0, 8, worker =>
        {
            for (var i = 0; i < 5000; i++)
            {
                using var lease = pin.Lease(worker * 512, 512);
            }
        });

        Assert.Equal(0, pin.ActiveLeases);
        Assert.Equal(0, pinner.Metrics.LeasedBytes);
    }
}
