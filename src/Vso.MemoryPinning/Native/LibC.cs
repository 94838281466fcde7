using System.Runtime.InteropServices;

namespace Vso.MemoryPinning.Native;

/// <summary>
/// The few libc calls this project needs. Kept here, and only here, so that every P/Invoke of the
/// project can be reviewed in one place (DESIGN.md §3, Native/).
/// </summary>
internal static partial class LibC
{
    /// <summary>RLIMIT_MEMLOCK on Linux (asm-generic/resource.h); see getrlimit(2).</summary>
    internal const int RLIMIT_MEMLOCK = 8;

    /// <summary>RLIM_INFINITY: rlim_t is an unsigned long on 64-bit Linux and "no limit" is all ones.</summary>
    internal const ulong RLIM_INFINITY = ulong.MaxValue;

    internal const int EPERM = 1;
    internal const int EAGAIN = 11;
    internal const int ENOMEM = 12;
    internal const int EINVAL = 22;

    /// <summary>struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; } — see getrlimit(2).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    /// <summary>mlock(2): lock the pages of [addr, addr+len) in RAM. Returns 0 or -1 with errno.</summary>
    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    internal static partial int Mlock(nint addr, nuint len);

    /// <summary>munlock(2): undo mlock for the pages of [addr, addr+len). Locks do not nest in the kernel.</summary>
    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    internal static partial int Munlock(nint addr, nuint len);

    /// <summary>getrlimit(2).</summary>
    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    internal static partial int GetRLimit(int resource, out RLimit rlim);
}
