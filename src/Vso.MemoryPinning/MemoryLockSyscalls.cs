using System.Globalization;
using System.Runtime.InteropServices;
using Vso.MemoryPinning.Native;

namespace Vso.MemoryPinning;

/// <summary>The system calls behind <see cref="PageLocker"/>; a seam so tests can count calls and fake limits.</summary>
internal interface IMemoryLockSyscalls
{
    /// <summary>mlock(2). Returns 0, or the errno of the failure.</summary>
    int Mlock(nint address, nuint length);

    /// <summary>munlock(2). Returns 0, or the errno of the failure.</summary>
    int Munlock(nint address, nuint length);

    /// <summary>The RLIMIT_MEMLOCK soft limit in bytes, <see cref="LibC.RLIM_INFINITY"/> when unlimited, null if unknown.</summary>
    ulong? GetMemlockSoftLimit();

    /// <summary>Whether the process holds CAP_IPC_LOCK in its effective set; then RLIMIT_MEMLOCK does not apply (mlock(2)).</summary>
    bool HasCapIpcLock();
}

/// <summary>The real Linux calls.</summary>
internal sealed class LinuxMemoryLockSyscalls : IMemoryLockSyscalls
{
    private const int CapIpcLock = 14; // linux/capability.h

    public static LinuxMemoryLockSyscalls Instance { get; } = new();

    public int Mlock(nint address, nuint length) => LibC.Mlock(address, length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public int Munlock(nint address, nuint length) => LibC.Munlock(address, length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public ulong? GetMemlockSoftLimit() => LibC.GetRLimit(LibC.RLIMIT_MEMLOCK, out var limit) == 0 ? limit.Current : null;

    public bool HasCapIpcLock()
    {
        // The effective capability set as a hex bit mask, e.g. "CapEff:\t000001ffffffffff" (proc(5)).
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("CapEff:", StringComparison.Ordinal)
                    && ulong.TryParse(line.AsSpan(7).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var mask))
                {
                    return (mask & (1UL << CapIpcLock)) != 0;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return false;
    }
}

/// <summary>The RLIMIT_MEMLOCK check done before mlock(2), as a pure function so it can be tested with any limit.</summary>
internal static class MemlockLimit
{
    /// <summary>
    /// Throws <see cref="MemoryLockException"/> if newly locking <paramref name="requestedBytes"/> on top of
    /// <paramref name="alreadyLockedBytes"/> would exceed <paramref name="softLimit"/>. Per mlock(2) and
    /// getrlimit(2), an unprivileged process may lock at most RLIMIT_MEMLOCK bytes; one with CAP_IPC_LOCK
    /// is not limited. Checking first turns the kernel's bare ENOMEM into a message that says what to do.
    /// </summary>
    internal static void EnsureWithin(ulong? softLimit, long alreadyLockedBytes, long requestedBytes, bool hasCapIpcLock)
    {
        if (hasCapIpcLock || softLimit is not { } limit || limit == LibC.RLIM_INFINITY)
        {
            return;
        }

        if ((ulong)(alreadyLockedBytes + requestedBytes) > limit)
        {
            throw MemoryLockException.LimitExceeded(limit, alreadyLockedBytes, requestedBytes);
        }
    }
}
