using System.Numerics;
using System.Runtime.InteropServices;
using Vso.Transport.Native;

namespace Vso.Transport.Links;

/// <summary>One received frame, read in place from a <see cref="PacketRing"/>: valid until <see cref="PacketRing.Release"/>.</summary>
internal readonly unsafe struct RingFrame(byte* data, uint length, uint snapLength, uint status, byte packetType)
{
    /// <summary>The Ethernet header's first byte (tp_mac bytes into the slot).</summary>
    public byte* Data { get; } = data;

    /// <summary>tp_len: the frame's length on the wire.</summary>
    public uint Length { get; } = length;

    /// <summary>tp_snaplen: the bytes the ring holds; less than <see cref="Length"/> when the slot was too small.</summary>
    public uint SnapLength { get; } = snapLength;

    /// <summary>tp_status: TP_STATUS_USER and the flags (LOSING, CSUMNOTREADY, …).</summary>
    public uint Status { get; } = status;

    /// <summary>sll_pkttype of the sockaddr_ll that follows the header (PACKET_HOST, PACKET_OUTGOING, …).</summary>
    public byte PacketType { get; } = packetType;
}

/// <summary>
/// A PACKET_MMAP receive ring of an AF_PACKET socket (packet(7); the kernel's Documentation/networking/packet_mmap.rst):
/// the kernel writes frames into memory mapped into both, then sets a status word to TP_STATUS_USER; we read the frame
/// in place and hand its memory back by writing TP_STATUS_KERNEL. No system call and no copy per frame. Owns the mapping.
/// Use: <see cref="TryPeek"/>, then <see cref="Release"/> once done with that frame.
/// </summary>
internal abstract unsafe class PacketRing : IDisposable
{
    private byte* _base;
    private readonly nuint _length;

    protected PacketRing(byte* ringBase, nuint length)
    {
        _base = ringBase;
        _length = length;
    }

    /// <summary>For the link's log line.</summary>
    public abstract string Description { get; }

    /// <summary>Whether a frame (or, for V3, a block) is ready for us: what poll(2) waits for.</summary>
    public abstract bool HasFrame { get; }

    protected byte* Base => _base;

    /// <summary>Opens the ring <paramref name="options"/> asks for on a bound-to-be AF_PACKET socket.</summary>
    public static PacketRing Open(int fd, AfPacketLinkOptions options, int mtu, string name) => options.ReceiveRing switch
    {
        AfPacketReceiveRing.V2 => TPacketV2Ring.Create(fd, options, mtu, name),
        _ => TPacketV3Ring.Create(fd, options, name),
    };

    /// <summary>The next frame, if the kernel has handed one over; it stays ours until <see cref="Release"/>.</summary>
    public abstract bool TryPeek(out RingFrame frame);

    /// <summary>Gives the frame <see cref="TryPeek"/> returned back to the kernel and moves to the next.</summary>
    public abstract void Release();

    public void Dispose()
    {
        if (_base != null)
        {
            _ = LinuxNative.munmap(_base, _length);
            _base = null;
        }
    }

    /// <summary>
    /// PACKET_VERSION, then PACKET_RX_RING with <paramref name="request"/> (the order packet(7) requires), then mmap of
    /// the whole ring: its blocks lie back to back in the mapping.
    /// </summary>
    protected static byte* Map(int fd, int version, void* request, uint requestLength, nuint length, string name, string what)
    {
        if (LinuxNative.setsockopt(fd, LinuxNative.SOL_PACKET, LinuxNative.PACKET_VERSION, &version, 4) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"setsockopt PACKET_VERSION {what} on '{name}'", "CAP_NET_RAW");
        }

        if (LinuxNative.setsockopt(fd, LinuxNative.SOL_PACKET, LinuxNative.PACKET_RX_RING, request, requestLength) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"PACKET_RX_RING ({what}) on '{name}'", "CAP_NET_RAW");
        }

        var ring = LinuxNative.mmap(null, length, LinuxNative.PROT_READ | LinuxNative.PROT_WRITE, LinuxNative.MAP_SHARED, fd, 0);
        return ring == (void*)-1
            ? throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"mmap of the receive ring ({what}) of '{name}'")
            : (byte*)ring;
    }

    /// <summary>Acquire read of a status word: the frame's bytes the kernel wrote before it are then visible to us.</summary>
    protected static bool IsUsers(byte* status) => (Volatile.Read(ref *(uint*)status) & LinuxNative.TP_STATUS_USER) != 0;

    /// <summary>Release write of TP_STATUS_KERNEL: our reads of the frame finish before the kernel may overwrite it.</summary>
    protected static void GiveBack(byte* status) => Volatile.Write(ref *(uint*)status, LinuxNative.TP_STATUS_KERNEL);
}

/// <summary>
/// TPACKET_V2: fixed-size slots, one frame each, each with its own status word. The kernel sets a slot to
/// TP_STATUS_USER as soon as it has written the frame and wakes poll(2) at once, so no frame waits for others:
/// the latency choice.
/// </summary>
internal sealed unsafe class TPacketV2Ring : PacketRing
{
    // struct tpacket2_hdr: u32 tp_status, u32 tp_len, u32 tp_snaplen, u16 tp_mac, u16 tp_net, u32 tp_sec, u32 tp_nsec,
    // u16 tp_vlan_tci, u16 tp_vlan_tpid, u8 tp_padding[4]: 32 bytes; the sockaddr_ll follows at TPACKET_ALIGN(32) = 32.
    private const int HeaderSize = 32;

    // Where the kernel's tpacket_rcv puts the network header: TPACKET_ALIGN(TPACKET2_HDRLEN + max(maclen, 16)) with
    // TPACKET2_HDRLEN = 32 + sizeof(sockaddr_ll) = 52, so 80 for any link header up to 28 bytes. A frame of MTU bytes
    // past its link header then ends at 80 + MTU; a bigger one is cut (tp_snaplen < tp_len).
    private const int NetworkOffset = 80;

    private readonly int _frameSize;
    private readonly int _frameCount;
    private readonly int _blockSize;
    private int _next;

    private TPacketV2Ring(byte* ringBase, nuint length, int frameSize, int frameCount, int blockSize)
        : base(ringBase, length)
    {
        _frameSize = frameSize;
        _frameCount = frameCount;
        _blockSize = blockSize;
    }

    public override string Description => $"TPACKET_V2 ring {_frameCount}x{_frameSize} B in {_blockSize} B blocks";

    public override bool HasFrame => IsUsers(Slot(_next));

    /// <summary>
    /// The slot size for an MTU: the smallest power of two that holds the headroom and the frame (2048 for MTU 1500).
    /// A power of two divides the power-of-two, page-multiple block size, so every block holds whole slots and the
    /// slots lie back to back: slot i is at i * frameSize (packet_mmap.rst: frames never span blocks).
    /// </summary>
    public static int FrameSizeFor(int mtu) => (int)BitOperations.RoundUpToPowerOf2((uint)(NetworkOffset + mtu));

    public static TPacketV2Ring Create(int fd, AfPacketLinkOptions options, int mtu, string name)
    {
        var frameSize = FrameSizeFor(mtu);
        var blockSize = Math.Max(Math.Max(options.BlockSize, frameSize), Environment.SystemPageSize);
        var frameCount = blockSize / frameSize * options.BlockCount;
        var request = new TPacketReq
        {
            BlockSize = (uint)blockSize,
            BlockCount = (uint)options.BlockCount,
            FrameSize = (uint)frameSize,
            FrameCount = (uint)frameCount,
        };
        var length = (nuint)((long)blockSize * options.BlockCount);
        var ring = Map(fd, LinuxNative.TPACKET_V2, &request, (uint)sizeof(TPacketReq), length, name,
            $"TPACKET_V2, {frameCount} frames of {frameSize} bytes");
        return new TPacketV2Ring(ring, length, frameSize, frameCount, blockSize);
    }

    public override bool TryPeek(out RingFrame frame)
    {
        var header = Slot(_next);
        if (!IsUsers(header))
        {
            frame = default;
            return false;
        }

        frame = new RingFrame(
            data: header + *(ushort*)(header + 12),
            length: *(uint*)(header + 4),
            snapLength: *(uint*)(header + 8),
            status: *(uint*)header,
            packetType: header[HeaderSize + 10]);
        return true;
    }

    public override void Release()
    {
        GiveBack(Slot(_next));
        _next = _next + 1 == _frameCount ? 0 : _next + 1;
    }

    private byte* Slot(int index) => Base + ((long)index * _frameSize);
}

/// <summary>
/// TPACKET_V3: variable-size frames packed into blocks, one status word per block. The kernel hands a block over only
/// when it is full or its retire timeout (tp_retire_blk_tov) expires, so a frame on a quiet link waits up to that
/// timeout; in exchange a busy link delivers many frames per wake-up.
/// </summary>
internal sealed unsafe class TPacketV3Ring : PacketRing
{
    private const int HeaderSize = 48; // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))

    // struct tpacket_block_desc: u32 version, u32 offset_to_priv, then struct tpacket_hdr_v1.
    private const int BlockStatus = 8;
    private const int BlockPackets = 12;
    private const int BlockFirstPacket = 16;

    private readonly int _blockSize;
    private readonly int _blockCount;
    private readonly int _timeoutMilliseconds;
    private int _block;
    private byte* _packet;
    private uint _remaining;
    private bool _inBlock;

    private TPacketV3Ring(byte* ringBase, nuint length, int blockSize, int blockCount, int timeoutMilliseconds)
        : base(ringBase, length)
    {
        _blockSize = blockSize;
        _blockCount = blockCount;
        _timeoutMilliseconds = timeoutMilliseconds;
    }

    public override string Description => $"TPACKET_V3 ring {_blockCount}x{_blockSize} B, block timeout {_timeoutMilliseconds} ms";

    public override bool HasFrame => _inBlock || IsUsers(CurrentBlock + BlockStatus);

    private byte* CurrentBlock => Base + ((long)_block * _blockSize);

    public static TPacketV3Ring Create(int fd, AfPacketLinkOptions options, string name)
    {
        // V3 frames are variable-size; the kernel checks only that frame_nr * frame_size fills the blocks.
        const int frameSize = 2048;
        var request = new TPacketReq3
        {
            BlockSize = (uint)options.BlockSize,
            BlockCount = (uint)options.BlockCount,
            FrameSize = frameSize,
            FrameCount = (uint)((long)options.BlockSize * options.BlockCount / frameSize),
            RetireBlockTimeoutMs = (uint)options.BlockTimeoutMilliseconds,
        };
        var length = (nuint)((long)options.BlockSize * options.BlockCount);
        var ring = Map(fd, LinuxNative.TPACKET_V3, &request, (uint)sizeof(TPacketReq3), length, name,
            $"TPACKET_V3, {options.BlockCount} blocks of {options.BlockSize} bytes");
        return new TPacketV3Ring(ring, length, options.BlockSize, options.BlockCount, options.BlockTimeoutMilliseconds);
    }

    public override bool TryPeek(out RingFrame frame)
    {
        while (_inBlock || EnterBlock())
        {
            if (_remaining > 0)
            {
                frame = Parse(_packet);
                return true;
            }

            ReleaseBlock(); // a block handed over empty
        }

        frame = default;
        return false;
    }

    public override void Release()
    {
        _packet += *(uint*)_packet; // tp_next_offset
        if (--_remaining == 0)
        {
            ReleaseBlock();
        }
    }

    private static RingFrame Parse(byte* header) => new(
        data: header + *(ushort*)(header + 24),
        length: *(uint*)(header + 16),
        snapLength: *(uint*)(header + 12),
        status: *(uint*)(header + 20),
        packetType: header[HeaderSize + 10]);

    private bool EnterBlock()
    {
        var block = CurrentBlock;
        if (!IsUsers(block + BlockStatus))
        {
            return false;
        }

        _remaining = *(uint*)(block + BlockPackets);
        _packet = block + *(uint*)(block + BlockFirstPacket);
        _inBlock = true;
        return true;
    }

    private void ReleaseBlock()
    {
        GiveBack(CurrentBlock + BlockStatus);
        _inBlock = false;
        _block = _block + 1 == _blockCount ? 0 : _block + 1;
    }
}
