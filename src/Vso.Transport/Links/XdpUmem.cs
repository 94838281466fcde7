using System.Runtime.InteropServices;
using Vso.Transport.Native;

namespace Vso.Transport.Links;

/// <summary>
/// The UMEM of an AF_XDP socket: one anonymous, page-aligned mapping of equal frames registered with XDP_UMEM_REG, which
/// the kernel pins (charged to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK). The first <c>rxFrames</c> frames
/// cycle through the fill and RX rings; the rest are TX frames, kept here on a free stack while no TX descriptor holds
/// them. A private area for now: the stack's pinned block pool does not yet lay its slabs out as UMEM frames.
/// </summary>
internal sealed unsafe class XdpUmem : IDisposable
{
    private readonly ulong[] _freeTx;
    private int _freeTxCount;
    private void* _area;

    private XdpUmem(void* area, ulong length, int frameSize, int rxFrames, int txFrames)
    {
        _area = area;
        Length = length;
        FrameSize = frameSize;
        RxFrames = rxFrames;
        _freeTx = new ulong[txFrames];
        for (var i = 0; i < txFrames; i++)
        {
            _freeTx[i] = (ulong)(rxFrames + txFrames - 1 - i) * (ulong)frameSize;
        }

        _freeTxCount = txFrames;
    }

    public ulong Length { get; }

    public int FrameSize { get; }

    public int RxFrames { get; }

    public int FreeTxFrames => _freeTxCount;

    public byte* Base => (byte*)_area;

    /// <summary>Maps the area and registers it on <paramref name="fd"/>; a refusal for lack of locked memory says how to raise it.</summary>
    public static XdpUmem Register(int fd, int frameSize, int rxFrames, int txFrames, string name)
    {
        var length = (ulong)frameSize * (ulong)(rxFrames + txFrames);
        var area = LinuxNative.mmap(null, (nuint)length, LinuxNative.PROT_READ | LinuxNative.PROT_WRITE, MapPrivate | MapAnonymous, -1, 0);
        if (area == (void*)-1)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"mmap of a {length}-byte UMEM for '{name}'");
        }

        var registration = new XdpUmemReg { Address = (ulong)area, Length = length, ChunkSize = (uint)frameSize };
        if (LinuxNative.setsockopt(fd, LinuxNative.SOL_XDP, LinuxNative.XDP_UMEM_REG, &registration, (uint)sizeof(XdpUmemReg)) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            _ = LinuxNative.munmap(area, (nuint)length);
            throw errno is Errno.ENOBUFS or Errno.ENOMEM or Errno.EPERM
                ? new LinkException(
                    $"Registering the AF_XDP UMEM of {length} bytes ({rxFrames + txFrames} frames of {frameSize}) for '{name}' failed: {Errno.Describe(errno)}. " +
                    $"The kernel pins it and charges it to RLIMIT_MEMLOCK, now {MemlockLimitText()}. Raise the limit (`ulimit -l unlimited`, " +
                    "systemd `LimitMEMLOCK=infinity`, `docker run --ulimit memlock=-1`), grant CAP_IPC_LOCK (`setcap cap_ipc_lock,...+ep <program>`), " +
                    "or make the rings smaller (Vso:AfXdp:RingSize).",
                    errno)
                : LinkException.FromErrno(errno, $"XDP_UMEM_REG of {length} bytes for '{name}'", "CAP_NET_RAW");
        }

        return new XdpUmem(area, length, frameSize, rxFrames, txFrames);
    }

    /// <summary>RLIMIT_MEMLOCK's soft limit, as the error message shows it.</summary>
    public static string MemlockLimitText()
    {
        RLimit limit;
        if (LinuxNative.getrlimit(LinuxNative.RLIMIT_MEMLOCK, &limit) < 0)
        {
            return "unknown";
        }

        return limit.Current == ulong.MaxValue ? "unlimited" : $"{limit.Current} bytes";
    }

    /// <summary>UMEM offset of RX frame <paramref name="index"/>, for the fill ring.</summary>
    public ulong RxFrame(int index) => (ulong)index * (ulong)FrameSize;

    /// <summary>The start of the frame holding <paramref name="address"/> (aligned chunks: the kernel adds headroom in front of the data).</summary>
    public ulong FrameOf(ulong address) => address - (address % (ulong)FrameSize);

    public bool TryRentTx(out ulong address)
    {
        if (_freeTxCount == 0)
        {
            address = 0;
            return false;
        }

        address = _freeTx[--_freeTxCount];
        return true;
    }

    /// <summary>A TX frame the completion ring gave back (or one never submitted).</summary>
    public void ReturnTx(ulong address) => _freeTx[_freeTxCount++] = FrameOf(address);

    public Span<byte> Frame(ulong address, int length) => new(Base + address, length);

    public void Dispose()
    {
        if (_area != null)
        {
            _ = LinuxNative.munmap(_area, (nuint)Length);
            _area = null;
        }
    }

    private const int MapPrivate = 0x02;
    private const int MapAnonymous = 0x20;
}
