using System.Runtime.InteropServices;

namespace Vso.Transport.Native;

/// <summary>
/// AF_XDP sockets (linux/if_xdp.h), the bpf(2) system call (linux/bpf.h) and the ethtool channel query that
/// <see cref="Links.AfXdpLink"/> needs. Debian's headers predate some of these (XDP_USE_SG, tx_metadata_len);
/// the values are the kernel's ABI.
/// </summary>
internal static unsafe partial class LinuxNative
{
    [LibraryImport(Libc, SetLastError = true)]
    public static partial nint sendto(int fd, void* buffer, nuint length, int flags, void* address, uint addressLength);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial nint recvfrom(int fd, void* buffer, nuint length, int flags, void* address, uint* addressLength);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int getrlimit(int resource, RLimit* limit);

    /// <summary>syscall(2) with three arguments, for bpf(2), which glibc does not wrap.</summary>
    [LibraryImport(Libc, SetLastError = true)]
    private static partial nint syscall(nint number, nint a1, nint a2, nint a3);

    /// <summary>bpf(cmd, attr, size): the system call number differs by architecture.</summary>
    public static int bpf(int command, void* attribute, uint size)
    {
        var number = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => 321,
            Architecture.Arm64 => 280,
            _ => throw new PlatformNotSupportedException($"bpf(2) is not wired for {RuntimeInformation.ProcessArchitecture}."),
        };
        return (int)syscall(number, command, (nint)attribute, (nint)size);
    }

    public const int AF_XDP = 44;
    public const int SOL_XDP = 283;
    public const int MSG_DONTWAIT = 0x40;
    public const int RLIMIT_MEMLOCK = 8;
    public const int CAP_IPC_LOCK = 14;
    public const int CAP_SYS_ADMIN = 21;
    public const int CAP_BPF = 39;

    // Socket options (SOL_XDP).
    public const int XDP_MMAP_OFFSETS = 1;
    public const int XDP_RX_RING = 2;
    public const int XDP_TX_RING = 3;
    public const int XDP_UMEM_REG = 4;
    public const int XDP_UMEM_FILL_RING = 5;
    public const int XDP_UMEM_COMPLETION_RING = 6;
    public const int XDP_STATISTICS = 7;
    public const int XDP_OPTIONS = 8;
    public const uint XDP_OPTIONS_ZEROCOPY = 1;

    // sxdp_flags.
    public const ushort XDP_COPY = 1 << 1;
    public const ushort XDP_ZEROCOPY = 1 << 2;
    public const ushort XDP_USE_NEED_WAKEUP = 1 << 3;
    public const ushort XDP_USE_SG = 1 << 4;
    public const uint XDP_UMEM_UNALIGNED_CHUNK_FLAG = 1;

    /// <summary>xdp_desc.options: more descriptors of the same packet follow (multi-buffer, XDP_USE_SG).</summary>
    public const uint XDP_PKT_CONTD = 1;
    public const uint XDP_RING_NEED_WAKEUP = 1;

    // mmap offsets of the four rings.
    public const long XDP_PGOFF_RX_RING = 0;
    public const long XDP_PGOFF_TX_RING = 0x80000000;
    public const long XDP_UMEM_PGOFF_FILL_RING = 0x100000000;
    public const long XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000;

    // bpf(2) commands and types.
    public const int BPF_MAP_CREATE = 0;
    public const int BPF_MAP_UPDATE_ELEM = 2;
    public const int BPF_PROG_LOAD = 5;
    public const int BPF_LINK_CREATE = 28;
    public const uint BPF_MAP_TYPE_XSKMAP = 17;
    public const uint BPF_PROG_TYPE_XDP = 6;
    public const uint BPF_XDP = 37;
    public const uint XDP_FLAGS_SKB_MODE = 1 << 1;
    public const uint XDP_FLAGS_DRV_MODE = 1 << 2;

    /// <summary>sizeof(union bpf_attr) on current kernels; the kernel accepts a shorter one whose tail it zero-fills.</summary>
    public const int BpfAttrSize = 144;

    public const nuint SIOCETHTOOL = 0x8946;
    public const uint ETHTOOL_GCHANNELS = 0x3c;
}

/// <summary>struct sockaddr_xdp.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct SockAddrXdp
{
    public ushort Family;
    public ushort Flags;
    public uint IfIndex;
    public uint QueueId;
    public uint SharedUmemFd;
}

/// <summary>struct xdp_umem_reg (with tx_metadata_len, 0: no TX metadata).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct XdpUmemReg
{
    public ulong Address;
    public ulong Length;
    public uint ChunkSize;
    public uint Headroom;
    public uint Flags;
    public uint TxMetadataLength;
}

/// <summary>struct xdp_ring_offset: where the producer index, consumer index, descriptors and flags lie in a ring's mapping.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct XdpRingOffset
{
    public ulong Producer;
    public ulong Consumer;
    public ulong Descriptors;
    public ulong Flags;
}

/// <summary>struct xdp_mmap_offsets.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct XdpMmapOffsets
{
    public XdpRingOffset Rx;
    public XdpRingOffset Tx;
    public XdpRingOffset Fill;
    public XdpRingOffset Completion;
}

/// <summary>struct xdp_desc: a frame in the RX or TX ring, by its offset in the UMEM.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct XdpDesc
{
    public ulong Address;
    public uint Length;
    public uint Options;
}

/// <summary>struct xdp_statistics.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct XdpStatistics
{
    public ulong RxDropped;
    public ulong RxInvalidDescriptors;
    public ulong TxInvalidDescriptors;
    public ulong RxRingFull;
    public ulong RxFillRingEmpty;
    public ulong TxRingEmpty;
}

[StructLayout(LayoutKind.Sequential)]
internal struct RLimit
{
    public ulong Current;
    public ulong Maximum;
}

/// <summary>struct ethtool_channels.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct EthtoolChannels
{
    public uint Command;
    public uint MaxRx;
    public uint MaxTx;
    public uint MaxOther;
    public uint MaxCombined;
    public uint RxCount;
    public uint TxCount;
    public uint OtherCount;
    public uint CombinedCount;
}
