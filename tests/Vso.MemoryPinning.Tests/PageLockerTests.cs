namespace Vso.MemoryPinning.Tests;

public sealed class PageLockerTests
{
    private const int Page = 4096;
    private const nint Base = 0x7000_0000;

    [Fact]
    public void Overlapping_ranges_lock_each_page_once_and_unlock_on_last_release()
    {
        var sys = new FakeLockSyscalls();
        var locker = new PageLocker(sys, Page);

        // Pages 0-1, then pages 1-2 (sharing page 1), both unaligned.
        Assert.Equal(2 * Page, locker.Lock(Base + 100, Page + 100));
        Assert.Equal(2 * Page, locker.Lock(Base + Page + 10, Page));

        Assert.Equal([(Base, (nuint)(2 * Page)), (Base + 2 * Page, (nuint)Page)], sys.Mlocks);
        Assert.Equal(3 * Page, locker.LockedBytes);
        Assert.Equal(2, locker.GetReferenceCount(Base + Page));
        Assert.Equal(1, locker.GetReferenceCount(Base));

        locker.Unlock(Base + 100, Page + 100);
        Assert.Equal([(Base, (nuint)Page)], sys.Munlocks); // page 1 is still referenced
        Assert.Equal(2 * Page, locker.LockedBytes);
        Assert.Equal(1, locker.GetReferenceCount(Base + Page));

        locker.Unlock(Base + Page + 10, Page);
        Assert.Equal([(Base, (nuint)Page), (Base + Page, (nuint)(2 * Page))], sys.Munlocks);
        Assert.Equal(0, locker.LockedBytes);
        Assert.Equal(0, locker.LockedPages);
    }

    [Fact]
    public void Locking_a_range_twice_calls_mlock_once()
    {
        var sys = new FakeLockSyscalls();
        var locker = new PageLocker(sys, Page);

        locker.Lock(Base, 10);
        locker.Lock(Base + 20, 10);
        Assert.Single(sys.Mlocks);

        locker.Unlock(Base, 10);
        Assert.Empty(sys.Munlocks);
        locker.Unlock(Base + 20, 10);
        Assert.Single(sys.Munlocks);
    }

    [Fact]
    public void A_range_with_a_locked_page_in_the_middle_is_locked_in_two_runs()
    {
        var sys = new FakeLockSyscalls();
        var locker = new PageLocker(sys, Page);
        locker.Lock(Base + Page, 1);

        locker.Lock(Base, 3 * Page);
        Assert.Equal([(Base + Page, (nuint)Page), (Base, (nuint)Page), (Base + 2 * Page, (nuint)Page)], sys.Mlocks);
        Assert.Equal(3 * Page, locker.LockedBytes);
    }

    [Fact]
    public void Unbalanced_unlock_is_refused()
    {
        var locker = new PageLocker(new FakeLockSyscalls(), Page);
        Assert.Throws<InvalidOperationException>(() => locker.Unlock(Base, 1));
    }

    [Fact]
    public void Rlimit_is_checked_before_mlock_and_nothing_is_locked()
    {
        var sys = new FakeLockSyscalls { SoftLimit = 2 * Page };
        var locker = new PageLocker(sys, Page);
        locker.Lock(Base, Page);

        var error = Assert.Throws<MemoryLockException>(() => locker.Lock(Base + 10 * Page, 2 * Page));
        Assert.Contains("RLIMIT_MEMLOCK", error.Message, StringComparison.Ordinal);
        Assert.Equal(2 * Page, error.RequestedBytes);
        Assert.Equal(Page, error.LockedBytes);
        Assert.Equal((ulong)(2 * Page), error.LimitBytes);
        Assert.Single(sys.Mlocks);
        Assert.Equal(Page, locker.LockedBytes);

        // Pages already locked cost nothing against the limit.
        locker.Lock(Base, Page);
        locker.Lock(Base + Page, Page);
        Assert.Equal(2 * Page, locker.LockedBytes);
    }

    [Fact]
    public void Cap_ipc_lock_lifts_the_limit()
    {
        var sys = new FakeLockSyscalls { SoftLimit = Page, CapIpcLock = true };
        var locker = new PageLocker(sys, Page);
        locker.Lock(Base, 4 * Page);
        Assert.Equal(4 * Page, locker.LockedBytes);
    }

    [Theory]
    [InlineData(12, "ENOMEM")]
    [InlineData(1, "EPERM")]
    public void Mlock_failure_gets_the_limit_message(int errno, string name)
    {
        var sys = new FakeLockSyscalls { SoftLimit = 64 * 1024, MlockErrno = errno };
        var locker = new PageLocker(sys, Page);

        var error = Assert.Throws<MemoryLockException>(() => locker.Lock(Base, Page));
        Assert.Equal(errno, error.Errno);
        Assert.Contains(name, error.Message, StringComparison.Ordinal);
        Assert.Contains("RLIMIT_MEMLOCK is 65536 bytes", error.Message, StringComparison.Ordinal);
        Assert.Contains("ulimit -l", error.Message, StringComparison.Ordinal);
        Assert.Contains("CAP_IPC_LOCK", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, locker.LockedBytes);
        Assert.Equal(0, locker.LockedPages);
    }

    [Fact]
    public void Pool_with_mlock_locks_each_slab_and_unlocks_on_dispose()
    {
        var sys = new FakeLockSyscalls();
        var locker = new PageLocker(sys, Environment.SystemPageSize);
        var metrics = new PinningMetrics();
        var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { Mlock = true, SlabSize = 64 * 1024 }, metrics, locker, Environment.SystemPageSize);

        var blocks = Enumerable.Range(0, 17).Select(_ => pool.Rent()).ToList();
        Assert.Equal(2, sys.Mlocks.Count);
        Assert.Equal(128 * 1024, locker.LockedBytes);
        Assert.Equal(128 * 1024, metrics.LockedBytes);

        blocks.ForEach(b => b.Dispose());
        Assert.Equal(128 * 1024, metrics.LockedBytes); // slabs stay locked while the pool lives
        pool.Dispose();
        Assert.Equal(2, sys.Munlocks.Count);
        Assert.Equal(0, locker.LockedBytes);
        Assert.Equal(0, metrics.LockedBytes);
    }

    [Fact]
    public void Pool_with_mlock_over_the_limit_throws_and_keeps_no_slab()
    {
        var sys = new FakeLockSyscalls { SoftLimit = 64 * 1024 };
        var locker = new PageLocker(sys, Environment.SystemPageSize);
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { Mlock = true }, new PinningMetrics(), locker, Environment.SystemPageSize);

        var error = Assert.Throws<MemoryLockException>(() => pool.Rent());
        Assert.Contains("RLIMIT_MEMLOCK", error.Message, StringComparison.Ordinal);
        Assert.Contains("262144", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, pool.AllocatedBytes);
        Assert.Equal(0, pool.Metrics.PinnedBytes);
        Assert.Equal(0, pool.Metrics.LockedBytes);
        Assert.Empty(sys.Mlocks);
    }
}
