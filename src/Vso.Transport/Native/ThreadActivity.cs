using System.Buffers.Text;

namespace Vso.Transport.Native;

/// <summary>
/// What one thread of this process is doing, as the kernel sees it: its scheduler state (/proc/self/task/TID/stat) and
/// the time it has run on a CPU (/proc/self/task/TID/schedstat, nanoseconds). Lets a watcher tell a thread blocked or
/// computing from one merely waiting for a core. Read by another thread; no allocation beyond the file handle.
/// </summary>
internal sealed class ThreadActivity
{
    private readonly string _statPath;
    private readonly string _schedstatPath;

    private ThreadActivity(int tid)
    {
        _statPath = $"/proc/self/task/{tid}/stat";
        _schedstatPath = $"/proc/self/task/{tid}/schedstat";
    }

    /// <summary>The calling thread's, or null where the kernel does not say (not Linux).</summary>
    public static ThreadActivity? OfCurrentThread() => OperatingSystem.IsLinux() ? new ThreadActivity(LinuxNative.gettid()) : null;

    /// <summary>
    /// The thread's state letter (R running or runnable, S sleeping, D in uninterruptible wait, ...) and its time on a
    /// CPU; false if either could not be read.
    /// </summary>
    public bool TryRead(out char state, out long runNanoseconds)
    {
        state = '?';
        runNanoseconds = 0;
        Span<byte> buffer = stackalloc byte[512];
        var n = ReadFile(_statPath, buffer);

        // "TID (comm) S ...": the name may hold spaces and parentheses, the state follows the last ')'.
        var close = buffer[..n].LastIndexOf((byte)')');
        if (close < 0 || close + 2 >= n)
        {
            return false;
        }

        state = (char)buffer[close + 2];
        n = ReadFile(_schedstatPath, buffer);
        return n > 0 && Utf8Parser.TryParse(buffer[..n], out runNanoseconds, out _);
    }

    private static int ReadFile(string path, Span<byte> buffer)
    {
        try
        {
            using var handle = File.OpenHandle(path);
            return RandomAccess.Read(handle, buffer, 0);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }
}
