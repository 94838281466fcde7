using System.Runtime.InteropServices;
using Vso.Transport.Native;

namespace Vso.Transport.Links;

/// <summary>
/// Blocks a real link's engine thread in ppoll(2) on the link's file descriptor and an eventfd, so that a frame
/// or <see cref="Interrupt"/> (work posted by the application) ends the wait at once.
/// </summary>
internal sealed unsafe class LinkWaker : IDisposable
{
    private int _eventFd;

    public LinkWaker()
    {
        _eventFd = LinuxNative.eventfd(0, LinuxNative.EFD_NONBLOCK | LinuxNative.EFD_CLOEXEC);
        if (_eventFd < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), "eventfd");
        }
    }

    /// <summary>Thread-safe: makes the current or next <see cref="Wait"/> return.</summary>
    public void Interrupt()
    {
        var fd = Volatile.Read(ref _eventFd);
        if (fd >= 0)
        {
            ulong one = 1;
            _ = LinuxNative.write(fd, &one, 8);
        }
    }

    /// <summary>Waits until <paramref name="fd"/> has <paramref name="events"/>, an interrupt, or the timeout; returns whether the fd is ready.</summary>
    public bool Wait(int fd, short events, TimeSpan timeout) => Wait(new ReadOnlySpan<int>(in fd), events, timeout);

    /// <summary>Waits until one of <paramref name="descriptors"/> (at most 64) has <paramref name="events"/>, an interrupt, or the timeout; returns whether one is ready.</summary>
    public bool Wait(ReadOnlySpan<int> descriptors, short events, TimeSpan timeout)
    {
        var count = descriptors.Length;
        var fds = stackalloc PollFd[count + 1];
        for (var i = 0; i < count; i++)
        {
            fds[i] = new PollFd { Fd = descriptors[i], Events = events };
        }

        fds[count] = new PollFd { Fd = _eventFd, Events = LinuxNative.POLLIN };
        TimeSpec spec;
        TimeSpec* specPointer = null;
        if (timeout >= TimeSpan.Zero)
        {
            var ticks = timeout.Ticks;
            spec = new TimeSpec { Seconds = ticks / TimeSpan.TicksPerSecond, Nanoseconds = ticks % TimeSpan.TicksPerSecond * 100 };
            specPointer = &spec;
        }

        var n = LinuxNative.ppoll(fds, (nuint)(count + 1), specPointer, null);
        if (n <= 0)
        {
            return false;
        }

        if ((fds[count].Revents & LinuxNative.POLLIN) != 0)
        {
            ulong value;
            _ = LinuxNative.read(_eventFd, &value, 8);
        }

        for (var i = 0; i < count; i++)
        {
            if ((fds[i].Revents & (events | LinuxNative.POLLERR)) != 0)
            {
                return true;
            }
        }

        return false;
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _eventFd, -1);
        if (fd >= 0)
        {
            _ = LinuxNative.close(fd);
        }
    }
}
