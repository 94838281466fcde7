using System.Runtime.InteropServices;
using System.Text;

namespace Vso.Transport.Native;

/// <summary>
/// BPF_PROG_LOAD (bpf(2)) of a program the stack writes itself, without libbpf: the steering program of a multi-queue TAP
/// and the XDP redirect program. The licence is GPL, which the helpers they call require.
/// </summary>
internal static unsafe class BpfProgram
{
    /// <summary>
    /// Loads <paramref name="instructions"/> as a program of <paramref name="type"/> named <paramref name="programName"/>
    /// (15 characters at most) and returns its descriptor. EPERM throws <paramref name="permissionError"/>'s exception,
    /// which says what to grant; any other refusal is the verifier's: the program is loaded again with a log, and the
    /// exception names <paramref name="what"/> with the log.
    /// </summary>
    public static int Load(uint type, ulong[] instructions, string programName, string what, Func<int, Exception> permissionError)
    {
        var license = "GPL\0"u8;
        var attr = stackalloc byte[LinuxNative.BpfAttrSize];
        fixed (ulong* insns = instructions)
        fixed (byte* licenseText = license)
        {
            var fd = Load(attr, type, insns, instructions.Length, licenseText, programName, null, 0);
            if (fd >= 0)
            {
                return fd;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno is Errno.EPERM)
            {
                throw permissionError(errno);
            }

            var log = new byte[1 << 16];
            fixed (byte* logBuffer = log)
            {
                _ = Load(attr, type, insns, instructions.Length, licenseText, programName, logBuffer, log.Length);
            }

            var text = Encoding.ASCII.GetString(log, 0, Math.Max(0, Array.IndexOf(log, (byte)0)));
            throw new Links.LinkException($"The kernel refused {what}: {Errno.Describe(errno)}. Verifier log:\n{text}", errno);
        }
    }

    /// <summary>Writes <paramref name="name"/> (ASCII, 15 characters at most, NUL-terminated by the cleared attr) at <paramref name="destination"/>.</summary>
    public static void WriteName(byte* destination, string name)
    {
        for (var i = 0; i < name.Length && i < 15; i++)
        {
            destination[i] = (byte)name[i];
        }
    }

    private static int Load(byte* attr, uint type, ulong* insns, int count, byte* license, string name, byte* log, int logSize)
    {
        new Span<byte>(attr, LinuxNative.BpfAttrSize).Clear();
        *(uint*)attr = type;
        *(uint*)(attr + 4) = (uint)count;
        *(ulong*)(attr + 8) = (ulong)insns;
        *(ulong*)(attr + 16) = (ulong)license;
        if (log != null)
        {
            *(uint*)(attr + 24) = 1;
            *(uint*)(attr + 28) = (uint)logSize;
            *(ulong*)(attr + 32) = (ulong)log;
        }

        WriteName(attr + 48, name);
        return LinuxNative.bpf(LinuxNative.BPF_PROG_LOAD, attr, LinuxNative.BpfAttrSize);
    }
}
