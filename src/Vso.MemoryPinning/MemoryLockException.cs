using System.Globalization;
using Vso.MemoryPinning.Native;

namespace Vso.MemoryPinning;

/// <summary>
/// Memory could not be locked in RAM with mlock(2): the request would exceed RLIMIT_MEMLOCK, or the
/// kernel refused it (ENOMEM, EPERM, EAGAIN). The message says how to raise the limit.
/// </summary>
internal sealed class MemoryLockException : IOException
{
    public MemoryLockException()
    {
    }

    public MemoryLockException(string message)
        : base(message)
    {
    }

    public MemoryLockException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    private MemoryLockException(string message, long requestedBytes, long lockedBytes, ulong? limitBytes, int errno)
        : base(message)
    {
        RequestedBytes = requestedBytes;
        LockedBytes = lockedBytes;
        LimitBytes = limitBytes;
        Errno = errno;
    }

    /// <summary>Bytes (whole pages) the failed request would have newly locked.</summary>
    public long RequestedBytes { get; }

    /// <summary>Bytes this process had already locked through Vso.MemoryPinning.</summary>
    public long LockedBytes { get; }

    /// <summary>The RLIMIT_MEMLOCK soft limit in bytes, or null if unknown or unlimited.</summary>
    public ulong? LimitBytes { get; }

    /// <summary>errno of the failed mlock(2) call, or 0 when the limit check refused before calling it.</summary>
    public int Errno { get; }

    internal static MemoryLockException LimitExceeded(ulong softLimit, long alreadyLocked, long requested)
    {
        var message = string.Create(
            CultureInfo.InvariantCulture,
            $"Cannot mlock {requested} bytes: RLIMIT_MEMLOCK allows {softLimit} bytes ({softLimit / 1024} KiB) of locked memory " +
            $"and {alreadyLocked} bytes are already locked, so {alreadyLocked + requested} bytes would be needed. {HowToRaise(alreadyLocked + requested)}");
        return new MemoryLockException(message, requested, alreadyLocked, softLimit, 0);
    }

    internal static MemoryLockException MlockFailed(int errno, long requested, long alreadyLocked, ulong? softLimit)
    {
        var name = errno switch
        {
            LibC.ENOMEM => "ENOMEM",
            LibC.EPERM => "EPERM",
            LibC.EAGAIN => "EAGAIN",
            LibC.EINVAL => "EINVAL",
            _ => "errno " + errno.ToString(CultureInfo.InvariantCulture),
        };

        // mlock(2): ENOMEM means the caller (without CAP_IPC_LOCK) would exceed RLIMIT_MEMLOCK (or the range
        // is not mapped), EPERM means RLIMIT_MEMLOCK is 0 and the caller lacks CAP_IPC_LOCK, EAGAIN means
        // some pages could not be locked.
        var limitText = softLimit is { } l
            ? string.Create(CultureInfo.InvariantCulture, $"RLIMIT_MEMLOCK is {l} bytes ({l / 1024} KiB)")
            : "RLIMIT_MEMLOCK is unlimited or unknown";
        var message = string.Create(
            CultureInfo.InvariantCulture,
            $"mlock of {requested} bytes failed with {name}: {limitText} and {alreadyLocked} bytes are already locked. {HowToRaise(alreadyLocked + requested)}");
        return new MemoryLockException(message, requested, alreadyLocked, softLimit, errno);
    }

    private static string HowToRaise(long neededBytes)
    {
        var kib = (neededBytes + 1023) / 1024;
        return string.Create(
            CultureInfo.InvariantCulture,
            $"Raise the limit to at least {kib} KiB: in a shell `ulimit -l {kib}` (or `ulimit -l unlimited`); in a systemd unit " +
            $"`LimitMEMLOCK={kib}K` (or `LimitMEMLOCK=infinity`); for logins a `<user> - memlock {kib}` line in /etc/security/limits.conf; " +
            $"in a container `--ulimit memlock=<bytes>`; or grant the process CAP_IPC_LOCK (e.g. `AmbientCapabilities=CAP_IPC_LOCK`), " +
            $"which exempts it from RLIMIT_MEMLOCK. Alternatively turn locking off (PinnedBlockPoolOptions.Mlock = false). See mlock(2) and getrlimit(2).");
    }
}
