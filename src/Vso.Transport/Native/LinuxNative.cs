using System.Runtime.InteropServices;

namespace Vso.Transport.Native;

/// <summary>
/// The Linux system calls the real links use. Every P/Invoke of Vso.Transport lives in this folder.
/// Functions set errno (read it with <see cref="Marshal.GetLastPInvokeError"/>); see <see cref="Errno"/>.
/// Tmds.LibC has the generic socket calls but none of the AF_PACKET ring, TUN or ifreq structs these links
/// need, so the few calls and their structs are declared here directly.
/// </summary>
internal static unsafe partial class LinuxNative
{
    private const string Libc = "libc";

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    /// <summary>The calling thread's kernel id (glibc 2.30 and later).</summary>
    [LibraryImport(Libc)]
    public static partial int gettid();

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int bind(int fd, void* address, uint addressLength);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int setsockopt(int fd, int level, int name, void* value, uint length);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int getsockopt(int fd, int level, int name, void* value, uint* length);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int ioctl(int fd, nuint request, void* argument);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial void* mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int munmap(void* address, nuint length);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int poll(PollFd* fds, nuint count, int timeoutMilliseconds);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int ppoll(PollFd* fds, nuint count, TimeSpec* timeout, void* sigmask);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int eventfd(uint initialValue, int flags);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial nint read(int fd, void* buffer, nuint count);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial nint write(int fd, void* buffer, nuint count);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial nint writev(int fd, IoVec* iov, int count);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int sendmmsg(int fd, MMsgHdr* messages, uint count, int flags);

    [LibraryImport(Libc, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string path, int flags);

    [LibraryImport(Libc, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial uint if_nametoindex(string name);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int setns(int fd, int namespaceType);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int unshare(int flags);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int kill(int pid, int signal);

    [LibraryImport(Libc)]
    public static partial uint geteuid();

    public const int SIGINT = 2;

    /// <summary>capget(2): <paramref name="header"/> is {u32 version, int pid}, <paramref name="data"/> two {effective, permitted, inheritable} u32 triples.</summary>
    [LibraryImport(Libc, SetLastError = true)]
    public static partial int capget(uint* header, uint* data);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int capset(uint* header, uint* data);

    public const uint LINUX_CAPABILITY_VERSION_3 = 0x20080522;
    public const int CAP_NET_ADMIN = 12;
    public const int CAP_NET_RAW = 13;

    // ---- Constants (x86-64 and arm64 Linux share these values) ----
    public const int AF_INET = 2;
    public const int AF_PACKET = 17;
    public const int SOCK_DGRAM = 2;
    public const int SOCK_RAW = 3;
    public const int SOCK_NONBLOCK = 0x800;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int O_RDWR = 2;
    public const int O_RDONLY = 0;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;
    public const int EFD_CLOEXEC = 0x80000;
    public const int CLONE_NEWNET = 0x40000000;

    public const ushort ETH_P_ALL = 0x0003;
    public const int SOL_SOCKET = 1;
    public const int SO_SNDBUF = 7;
    public const int SO_RCVBUF = 8;
    public const int SO_SNDBUFFORCE = 32;
    public const int SO_ATTACH_FILTER = 26;
    public const int SO_RCVBUFFORCE = 33;
    public const int SOL_PACKET = 263;
    public const int PACKET_RX_RING = 5;
    public const int PACKET_STATISTICS = 6;
    public const int PACKET_VERSION = 10;
    public const int PACKET_COPY_THRESH = 7;
    public const int PACKET_VNET_HDR = 15;
    public const int PACKET_QDISC_BYPASS = 20;
    public const int PACKET_IGNORE_OUTGOING = 23;
    public const int PACKET_FANOUT = 18;
    public const int PACKET_FANOUT_DATA = 22;
    public const int PACKET_FANOUT_CBPF = 6;
    public const int PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000;
    public const int TPACKET_V2 = 1;
    public const int TPACKET_V3 = 2;
    public const byte PACKET_OUTGOING = 4;

    public const uint TP_STATUS_KERNEL = 0;
    public const uint TP_STATUS_USER = 1;
    public const uint TP_STATUS_COPY = 1 << 1;
    public const uint TP_STATUS_LOSING = 1 << 2;
    public const uint TP_STATUS_CSUMNOTREADY = 1 << 3;

    public const int PROT_READ = 1;
    public const int PROT_WRITE = 2;
    public const int MAP_SHARED = 1;
    public const int MAP_LOCKED = 0x2000;

    public const short POLLIN = 1;
    public const short POLLOUT = 4;
    public const short POLLERR = 8;

    public const nuint SIOCGIFFLAGS = 0x8913;
    public const nuint SIOCSIFFLAGS = 0x8914;
    public const nuint SIOCSIFADDR = 0x8916;
    public const nuint SIOCSIFNETMASK = 0x891c;
    public const nuint SIOCGIFMTU = 0x8921;
    public const nuint SIOCSIFMTU = 0x8922;
    public const nuint SIOCGIFHWADDR = 0x8927;
    public const nuint SIOCGIFINDEX = 0x8933;
    public const nuint TUNSETIFF = 0x400454ca;
    public const nuint TUNSETPERSIST = 0x400454cb;
    public const nuint TUNSETOFFLOAD = 0x400454d0;     // _IOW('T', 208, unsigned int)
    public const nuint TUNSETVNETHDRSZ = 0x400454d8;   // _IOW('T', 216, int)
    public const nuint TUNSETSTEERINGEBPF = 0x800454e0; // _IOR('T', 224, int): a pointer to the program's fd, -1 detaches
    public const uint BPF_PROG_TYPE_SOCKET_FILTER = 1;
    public const int BPF_PROG_TEST_RUN = 10;
    public const uint TUN_F_CSUM = 0x01;
    public const uint TUN_F_TSO4 = 0x02;

    public const short IFF_UP = 0x1;
    public const short IFF_RUNNING = 0x40;
    public const short IFF_TAP = 0x0002;
    public const short IFF_NO_PI = 0x1000;
    public const short IFF_MULTI_QUEUE = 0x0100;
    public const short IFF_VNET_HDR = 0x4000;
}

internal static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int EINTR = 4;
    public const int ENXIO = 6;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOBUFS = 105;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int EMSGSIZE = 90;
    public const int ENETDOWN = 100;
    public const int ENOMEM = 12;
    public const int EEXIST = 17;
    public const int EOPNOTSUPP = 95;

    public static string Describe(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}

[StructLayout(LayoutKind.Sequential)]
internal struct PollFd
{
    public int Fd;
    public short Events;
    public short Revents;
}

[StructLayout(LayoutKind.Sequential)]
internal struct TimeSpec
{
    public long Seconds;
    public long Nanoseconds;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct IoVec
{
    public void* Base;
    public nuint Length;
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MsgHdr
{
    public void* Name;
    public uint NameLength;
    public IoVec* Iov;
    public nuint IovLength;
    public void* Control;
    public nuint ControlLength;
    public int Flags;
}

[StructLayout(LayoutKind.Sequential)]
internal struct MMsgHdr
{
    public MsgHdr Header;
    public uint Length;
}

/// <summary>struct sockaddr_ll (linux/if_packet.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SockAddrLl
{
    public ushort Family;
    public ushort Protocol; // network byte order
    public int IfIndex;
    public ushort HaType;
    public byte PktType;
    public byte HaLength;
    public fixed byte Address[8];
}

/// <summary>struct tpacket_req (linux/if_packet.h): the PACKET_RX_RING request of TPACKET_V1 and V2.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TPacketReq
{
    public uint BlockSize;
    public uint BlockCount;
    public uint FrameSize;
    public uint FrameCount;
}

/// <summary>struct tpacket_req3 (linux/if_packet.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TPacketReq3
{
    public uint BlockSize;
    public uint BlockCount;
    public uint FrameSize;
    public uint FrameCount;
    public uint RetireBlockTimeoutMs;
    public uint SizeofPriv;
    public uint FeatureRequestWord;
}

/// <summary>struct tpacket_stats_v3; a TPACKET_V2 socket fills only the first two fields (struct tpacket_stats).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TPacketStatsV3
{
    public uint Packets;
    public uint Drops;
    public uint FreezeQueueCount;
}

/// <summary>struct ifreq: a 16-byte name and a 24-byte union (flags, ifindex, mtu, sockaddr).</summary>
[StructLayout(LayoutKind.Sequential, Size = 40)]
internal unsafe struct IfReq
{
    public fixed byte Name[16];
    public fixed byte Union[24];

    public static IfReq For(string name)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(name);
        if (bytes.Length > 15)
        {
            throw new ArgumentException($"Interface name '{name}' is longer than 15 characters.", nameof(name));
        }

        var r = default(IfReq);
        for (var i = 0; i < bytes.Length; i++)
        {
            r.Name[i] = bytes[i];
        }

        return r;
    }

    public short Flags
    {
        readonly get { fixed (byte* u = Union) { return *(short*)u; } }
        set { fixed (byte* u = Union) { *(short*)u = value; } }
    }

    public int IntValue
    {
        readonly get { fixed (byte* u = Union) { return *(int*)u; } }
        set { fixed (byte* u = Union) { *(int*)u = value; } }
    }

    /// <summary>sockaddr.sa_data of ifr_hwaddr: the MAC starts 2 bytes in.</summary>
    public readonly byte HardwareAddressByte(int i) { fixed (byte* u = Union) { return u[2 + i]; } }

    /// <summary>Writes a sockaddr_in (AF_INET, port 0, address) for SIOCSIFADDR / SIOCSIFNETMASK.</summary>
    public void SetInetAddress(ReadOnlySpan<byte> address)
    {
        fixed (byte* u = Union)
        {
            new Span<byte>(u, 24).Clear();
            *(ushort*)u = LinuxNative.AF_INET;
            for (var i = 0; i < 4; i++)
            {
                u[4 + i] = address[i];
            }
        }
    }

    public readonly string GetName()
    {
        fixed (byte* n = Name)
        {
            var length = new ReadOnlySpan<byte>(n, 16).IndexOf((byte)0);
            return System.Text.Encoding.ASCII.GetString(n, length < 0 ? 16 : length);
        }
    }
}
