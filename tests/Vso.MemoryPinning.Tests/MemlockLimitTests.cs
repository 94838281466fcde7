namespace Vso.MemoryPinning.Tests;

public sealed class MemlockLimitTests
{
    [Fact]
    public void Request_over_the_soft_limit_names_limit_request_and_remedies()
    {
        var error = Assert.Throws<MemoryLockException>(() => MemlockLimit.EnsureWithin(64 * 1024, alreadyLockedBytes: 0, requestedBytes: 256 * 1024, hasCapIpcLock: false));

        Assert.Contains("RLIMIT_MEMLOCK", error.Message, StringComparison.Ordinal);
        Assert.Contains("65536 bytes", error.Message, StringComparison.Ordinal); // the current limit
        Assert.Contains("262144 bytes", error.Message, StringComparison.Ordinal); // the request
        Assert.Contains("ulimit -l 256", error.Message, StringComparison.Ordinal);
        Assert.Contains("LimitMEMLOCK=256K", error.Message, StringComparison.Ordinal);
        Assert.Contains("/etc/security/limits.conf", error.Message, StringComparison.Ordinal);
        Assert.Contains("memlock", error.Message, StringComparison.Ordinal);
        Assert.Contains("CAP_IPC_LOCK", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, error.Errno);
        Assert.Equal(262144, error.RequestedBytes);
        Assert.Equal(65536UL, error.LimitBytes);
    }

    [Fact]
    public void Already_locked_bytes_count_against_the_limit()
    {
        MemlockLimit.EnsureWithin(64 * 1024, 32 * 1024, 32 * 1024, false);
        var error = Assert.Throws<MemoryLockException>(() => MemlockLimit.EnsureWithin(64 * 1024, 32 * 1024, 36 * 1024, false));
        Assert.Contains("ulimit -l 68", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unlimited_unknown_or_privileged_is_not_refused()
    {
        MemlockLimit.EnsureWithin(ulong.MaxValue, 0, long.MaxValue / 2, false);
        MemlockLimit.EnsureWithin(null, 0, 1 << 30, false);
        MemlockLimit.EnsureWithin(0, 0, 1 << 30, hasCapIpcLock: true);
    }
}
