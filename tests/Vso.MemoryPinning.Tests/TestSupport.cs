using System.Globalization;

namespace Vso.MemoryPinning.Tests;

/// <summary>Counts calls and fakes RLIMIT_MEMLOCK so locking logic is tested without the machine's limits.</summary>
internal sealed class FakeLockSyscalls : IMemoryLockSyscalls
{
    public List<(nint Address, nuint Length)> Mlocks { get; } = [];

    public List<(nint Address, nuint Length)> Munlocks { get; } = [];

    public ulong? SoftLimit { get; set; } = Native.LibC.RLIM_INFINITY;

    public bool CapIpcLock { get; set; }

    public int MlockErrno { get; set; }

    public int Mlock(nint address, nuint length)
    {
        if (MlockErrno != 0)
        {
            return MlockErrno;
        }

        Mlocks.Add((address, length));
        return 0;
    }

    public int Munlock(nint address, nuint length)
    {
        Munlocks.Add((address, length));
        return 0;
    }

    public ulong? GetMemlockSoftLimit() => SoftLimit;

    public bool HasCapIpcLock() => CapIpcLock;
}

internal static class ProcStatus
{
    /// <summary>VmLck of /proc/self/status in bytes (proc(5)): memory locked by this process.</summary>
    public static long LockedBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmLck:", StringComparison.Ordinal))
            {
                var kb = line["VmLck:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException("No VmLck line in /proc/self/status.");
    }
}

/// <summary>Tests that call the real mlock(2) and read the process-wide VmLck run alone.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RealMlockCollection
{
    public const string Name = "Real mlock";
}
