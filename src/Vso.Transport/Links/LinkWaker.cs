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
    public bool Wait(int fd, short events, TimeSpan timeout)
    {
        var fds = stackalloc PollFd[2];
        fds[0] = new PollFd { Fd = fd, Events = events };
        fds[1] = new PollFd { Fd = _eventFd, Events = LinuxNative.POLLIN };
        TimeSpec spec;
        TimeSpec* specPointer = null;
        if (timeout >= TimeSpan.Zero)
        {
            var ticks = timeout.Ticks;
            spec = new TimeSpec { Seconds = ticks / TimeSpan.TicksPerSecond, Nanoseconds = ticks % TimeSpan.TicksPerSecond * 100 };
            specPointer = &spec;
        }

        var n = LinuxNative.ppoll(fds, 2, specPointer, null);
        if (n <= 0)
        {
            return false;
        }

        if ((fds[1].Revents & LinuxNative.POLLIN) != 0)
        {
            ulong value;
            _ = LinuxNative.read(_eventFd, &value, 8);
        }

        return (fds[0].Revents & (events | LinuxNative.POLLERR)) != 0;
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
