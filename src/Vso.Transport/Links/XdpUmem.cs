using System.Runtime.InteropServices;
using Vso.MemoryPinning;
using Vso.Transport.Native;

namespace Vso.Transport.Links;

/// <summary>
/// The UMEM of one AF_XDP socket, registered with XDP_UMEM_REG and pinned by the kernel (charged to RLIMIT_MEMLOCK
/// unless the process has CAP_IPC_LOCK). Two layouts:
/// <list type="bullet">
/// <item>Private: one anonymous mapping of equal, aligned frames; nothing but the link's own frames lies in it.</item>
/// <item>Over a pinned block pool's contiguous region (<see cref="PinnedBlockPoolOptions.ContiguousBytes"/>), registered
/// with XDP_UMEM_UNALIGNED_CHUNK_FLAG so that a TX descriptor may name any address inside it: the link's own frames are
/// blocks rented from the pool, and a payload the application wrote into a block of the region is handed to the
/// device where it lies (<see cref="TryOffsetOf"/>).</item>
/// </list>
/// The first <c>rxFrames</c> frames cycle through the fill and RX rings; the others are TX frames, kept here on a free
/// stack while no TX descriptor holds them.
/// </summary>
internal sealed unsafe class XdpUmem : IDisposable
{
    /// <summary>XSK_UNALIGNED_BUF_OFFSET_SHIFT: in unaligned mode an RX address carries the data's offset in its top 16 bits.</summary>
    private const int OffsetShift = 48;
    private const ulong AddressMask = (1UL << OffsetShift) - 1;

    private readonly ulong[] _rxFrames;
    private readonly ulong[] _freeTx;
    private readonly PinnedBlock[]? _blocks;
    private int _freeTxCount;
    private void* _area;

    private XdpUmem(byte* baseAddress, ulong length, int frameSize, ulong[] frames, int rxFrames, void* area, PinnedBlock[]? blocks)
    {
        Base = baseAddress;
        _area = area;
        _blocks = blocks;
        Length = length;
        FrameSize = frameSize;
        Unaligned = blocks is not null;
        _rxFrames = frames[..rxFrames];
        var txFrames = frames.Length - rxFrames;
        _freeTx = new ulong[txFrames];
        for (var i = 0; i < txFrames; i++)
        {
            _freeTx[i] = frames[frames.Length - 1 - i];
        }

        _freeTxCount = txFrames;
    }

    public ulong Length { get; }

    public int FrameSize { get; }

    /// <summary>Registered with XDP_UMEM_UNALIGNED_CHUNK_FLAG over a pool's region.</summary>
    public bool Unaligned { get; }

    public int RxFrames => _rxFrames.Length;

    public int FreeTxFrames => _freeTxCount;

    public byte* Base { get; }

    /// <summary>Maps a private area of <paramref name="rxFrames"/> + <paramref name="txFrames"/> aligned frames and registers it on <paramref name="fd"/>.</summary>
    public static XdpUmem RegisterPrivate(int fd, int frameSize, int rxFrames, int txFrames, string name)
    {
        var length = (ulong)frameSize * (ulong)(rxFrames + txFrames);
        var area = LinuxNative.mmap(null, (nuint)length, LinuxNative.PROT_READ | LinuxNative.PROT_WRITE, MapPrivate | MapAnonymous, -1, 0);
        if (area == (void*)-1)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"mmap of a {length}-byte UMEM for '{name}'");
        }

        var registration = new XdpUmemReg { Address = (ulong)area, Length = length, ChunkSize = (uint)frameSize };
        var errno = Register(fd, registration);
        if (errno != 0)
        {
            _ = LinuxNative.munmap(area, (nuint)length);
            throw RegistrationFailed(errno, length, $"{rxFrames + txFrames} frames of {frameSize}", name, "or make the rings smaller (Vso:AfXdp:RingSize).");
        }

        var frames = new ulong[rxFrames + txFrames];
        for (var i = 0; i < frames.Length; i++)
        {
            frames[i] = (ulong)i * (ulong)frameSize;
        }

        return new XdpUmem((byte*)area, length, frameSize, frames, rxFrames, area, blocks: null);
    }

    /// <summary>
    /// Registers <paramref name="pool"/>'s contiguous region on <paramref name="fd"/> (unaligned chunks of
    /// <paramref name="frameSize"/>) and rents from the pool the blocks that hold the link's own frames.
    /// </summary>
    public static XdpUmem RegisterOnPool(int fd, PinnedBlockPool pool, int frameSize, int rxFrames, int txFrames, string name)
    {
        var (region, regionLength) = pool.ContiguousRegion;
        if (region == 0)
        {
            throw new LinkException(
                $"The pinned block pool given to the AF_XDP link of '{name}' has no contiguous region for a UMEM: make it with PinnedBlockPoolOptions.ContiguousBytes.",
                Errno.EINVAL);
        }

        if (pool.BlockSize < frameSize)
        {
            throw new LinkException(
                $"The pinned block pool given to the AF_XDP link of '{name}' has blocks of {pool.BlockSize} bytes, smaller than its UMEM frames of {frameSize}: use blocks of at least {frameSize} bytes (Vso:Pinning:BlockSize).",
                Errno.EINVAL);
        }

        var perBlock = pool.BlockSize / frameSize;
        var total = rxFrames + txFrames;
        var blocks = new PinnedBlock[(total + perBlock - 1) / perBlock];
        var frames = new ulong[total];
        var n = 0;
        try
        {
            for (var b = 0; b < blocks.Length; b++)
            {
                var block = pool.Rent();
                blocks[b] = block;
                var offset = (long)block.Address - region;
                if (offset < 0 || offset + block.Length > regionLength)
                {
                    throw new LinkException(
                        $"The pinned block pool's contiguous region ({regionLength} bytes) has no room for the {total} frames of {frameSize} bytes of the AF_XDP link of '{name}' " +
                        $"({(long)total * frameSize} bytes) beside the blocks already rented: make the region larger (PinnedBlockPoolOptions.ContiguousBytes, Vso:AfXdp:UmemBytes) or the rings smaller (Vso:AfXdp:RingSize).",
                        Errno.ENOMEM);
                }

                for (var k = 0; k < perBlock && n < total; k++)
                {
                    frames[n++] = (ulong)offset + ((ulong)k * (ulong)frameSize);
                }
            }

            var registration = new XdpUmemReg { Address = (ulong)region, Length = (ulong)regionLength, ChunkSize = (uint)frameSize, Flags = LinuxNative.XDP_UMEM_UNALIGNED_CHUNK_FLAG };
            var errno = Register(fd, registration);
            if (errno != 0)
            {
                throw RegistrationFailed(errno, (ulong)regionLength, "the pinned block pool's contiguous region", name, "or make the region smaller (Vso:AfXdp:UmemBytes).");
            }
        }
        catch
        {
            foreach (var block in blocks)
            {
                block?.Dispose();
            }

            throw;
        }

        return new XdpUmem((byte*)region, (ulong)regionLength, frameSize, frames, rxFrames, area: null, blocks);
    }

    private static int Register(int fd, XdpUmemReg registration) =>
        LinuxNative.setsockopt(fd, LinuxNative.SOL_XDP, LinuxNative.XDP_UMEM_REG, &registration, (uint)sizeof(XdpUmemReg)) < 0
            ? Marshal.GetLastPInvokeError()
            : 0;

    private static LinkException RegistrationFailed(int errno, ulong length, string what, string name, string smaller) =>
        errno is Errno.ENOBUFS or Errno.ENOMEM or Errno.EPERM
            ? new LinkException(
                $"Registering the AF_XDP UMEM of {length} bytes ({what}) for '{name}' failed: {Errno.Describe(errno)}. " +
                $"The kernel pins it and charges it to RLIMIT_MEMLOCK, now {MemlockLimitText()}. Raise the limit (`ulimit -l unlimited`, " +
                "systemd `LimitMEMLOCK=infinity`, `docker run --ulimit memlock=-1`), grant CAP_IPC_LOCK (`setcap cap_ipc_lock,...+ep <program>`), " +
                smaller,
                errno)
            : LinkException.FromErrno(errno, $"XDP_UMEM_REG of {length} bytes for '{name}'", "CAP_NET_RAW");

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

    /// <summary>UMEM address of RX frame <paramref name="index"/>, for the fill ring.</summary>
    public ulong RxFrame(int index) => _rxFrames[index];

    /// <summary>Where the data of an RX descriptor's address lies (unaligned: base plus the offset in the top bits).</summary>
    public ulong DataOf(ulong address) => Unaligned ? (address & AddressMask) + (address >> OffsetShift) : address;

    /// <summary>The frame an RX descriptor's address belongs to, as the fill ring takes it back.</summary>
    public ulong FrameOf(ulong address) => Unaligned ? address & AddressMask : address - (address % (ulong)FrameSize);

    /// <summary>The UMEM address of [<paramref name="address"/>, +<paramref name="length"/>) if all of it lies in the UMEM.</summary>
    public bool TryOffsetOf(nint address, int length, out ulong offset)
    {
        offset = (ulong)((long)address - (long)Base);
        return (long)address >= (long)Base && offset + (ulong)length <= Length;
    }

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

    /// <summary>A TX frame the completion ring gave back (or one never submitted), by the address it was rented as.</summary>
    public void ReturnTx(ulong address) => _freeTx[_freeTxCount++] = address;

    public Span<byte> Frame(ulong address, int length) => new(Base + address, length);

    /// <summary>Call after the socket is closed: the kernel no longer reads or writes the frames.</summary>
    public void Dispose()
    {
        if (_area != null)
        {
            _ = LinuxNative.munmap(_area, (nuint)Length);
            _area = null;
        }

        if (_blocks is not null)
        {
            foreach (var block in _blocks)
            {
                block.Dispose();
            }
        }
    }

    private const int MapPrivate = 0x02;
    private const int MapAnonymous = 0x20;
}
