namespace Vso.MemoryPinning.Tests;

/// <summary>
/// Real mlock(2), checked against VmLck of /proc/self/status. These run alone (their collection disables
/// parallelization) because VmLck is process-wide.
/// </summary>
[Collection(RealMlockCollection.Name)]
public sealed class RealMlockTests
{
    private static readonly int Page = Environment.SystemPageSize;

    [Fact]
    public void Overlapping_ranges_lock_once_and_unlock_on_last_release_per_VmLck()
    {
        var locker = new PageLocker(LinuxMemoryLockSyscalls.Instance, Page);
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 4 * Page, BlockSize = Page });
        var blocks = Enumerable.Range(0, 4).Select(_ => pool.Rent()).ToList();
        var start = blocks[0].Address; // one slab: four consecutive pages
        var before = ProcStatus.LockedBytes();

        locker.Lock(start, 2 * Page);           // pages 0-1
        locker.Lock(start + Page + 1, Page);    // pages 1-2
        Assert.Equal(before + 3 * Page, ProcStatus.LockedBytes());
        Assert.Equal(2, locker.MlockCalls);

        locker.Unlock(start, 2 * Page);
        Assert.Equal(before + 2 * Page, ProcStatus.LockedBytes()); // page 1 still held by the second range

        locker.Unlock(start + Page + 1, Page);
        Assert.Equal(before, ProcStatus.LockedBytes());
        blocks.ForEach(b => b.Dispose());
    }

    [Fact]
    public void Pool_with_mlock_locks_its_slabs_per_VmLck_and_metrics()
    {
        var before = ProcStatus.LockedBytes();
        var globalBefore = PinningMetrics.Global.LockedBytes;
        var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { Mlock = true });
        var block = pool.Rent();

        Assert.Equal(before + 256 * 1024, ProcStatus.LockedBytes());
        Assert.Equal(256 * 1024, pool.Metrics.LockedBytes);
        Assert.Equal(globalBefore + 256 * 1024, PinningMetrics.Global.LockedBytes);

        block.Dispose();
        pool.Dispose();
        Assert.Equal(before, ProcStatus.LockedBytes());
        Assert.Equal(0, pool.Metrics.LockedBytes);
        Assert.Equal(globalBefore, PinningMetrics.Global.LockedBytes);
    }

    [Fact]
    public void Foreign_pin_inside_a_locked_slab_does_not_unlock_it()
    {
        // Both lock the same pages through the process locker; without page counts the foreign
        // release would munlock the pool's slab.
        var before = ProcStatus.LockedBytes();
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { Mlock = true, SlabSize = 16 * Page });
        using var block = pool.Rent();
        var pinner = new ForeignMemoryPinner(mlock: true);

        var pin = pinner.Pin(block.Memory[..100]);
        Assert.Equal(before + 16 * Page, ProcStatus.LockedBytes());
        pin.Dispose();
        Assert.Equal(before + 16 * Page, ProcStatus.LockedBytes());
        Assert.Equal(0, pinner.Metrics.LockedBytes);
    }
}
