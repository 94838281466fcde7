using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Vso.MemoryPinning;
using Vso.Transport.Native;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// One AF_XDP socket bound to one receive queue: its UMEM, its four rings, and the record of what its TX descriptors
/// hold until the completion ring gives them back. <see cref="AfXdpLink"/> owns one per queue it serves.
/// <para>
/// A frame leaves in one of two ways. In place: when the socket is bound with XDP_USE_SG over a pool's region and
/// every gathered payload piece of the frame lies in that region, the headers are copied into one of the socket's own
/// frames and the payload pieces are further descriptors of the same packet (XDP_PKT_CONTD) naming the application's
/// bytes where they lie; the frame's pin leases move from the batch to the socket and end when the completion ring
/// returns the piece. Otherwise the whole frame is copied once into one of the socket's TX frames.
/// </para>
/// </summary>
internal sealed unsafe class XskSocket : IDisposable
{
    /// <summary>Descriptors of one in-place packet at most: the kernel's copy mode takes MAX_SKB_FRAGS (17) fragments after the first.</summary>
    internal const int MaxDescriptorsPerPacket = 17;

    /// <summary>Completion entries searched past the oldest outstanding descriptor before one is counted as unmatched.</summary>
    private const int CompletionSearch = 64;

    private const int EAFNOSUPPORT = 97;

    private readonly ILogger _log;
    private readonly string _name;
    private readonly XdpUmem _umem;
    private readonly XskRing _fill;
    private readonly XskRing _completion;
    private readonly XskRing _rx;
    private readonly XskRing _tx;

    // Outstanding TX descriptors in submission order (a ring of twice the TX ring: the TX ring plus the completion ring).
    private readonly ulong[] _sentAddress;
    private readonly PinLease[] _sentLease;
    private readonly byte[] _sentState;
    private readonly uint _sentMask;
    private uint _sentHead;
    private uint _sentTail;
    private uint _queued; // descriptors written to the TX ring and not yet submitted
    private int _fd;

    private const byte Free = 0;
    private const byte OwnFrame = 1;    // one of the socket's TX frames: back to the free stack on completion
    private const byte InPlace = 2;     // a piece of the application's memory: its lease (if any) ends on completion

    private XskSocket(int fd, string name, int queue, XdpUmem umem, XskRing fill, XskRing completion, XskRing rx, XskRing tx, ILogger log)
    {
        _fd = fd;
        _name = name;
        Queue = queue;
        _umem = umem;
        _fill = fill;
        _completion = completion;
        _rx = rx;
        _tx = tx;
        _log = log;
        var shadow = tx.Size * 2;
        _sentAddress = new ulong[shadow];
        _sentLease = new PinLease[shadow];
        _sentState = new byte[shadow];
        _sentMask = shadow - 1;
    }

    public int Fd => _fd;

    public int Queue { get; }

    public XdpUmem Umem => _umem;

    /// <summary>Bound with XDP_USE_SG over a pool's region: frames whose payload lies in the region leave in place.</summary>
    public bool InPlaceTransmit { get; private set; }

    public bool ZeroCopy { get; private set; }

    public long FramesReceived { get; private set; }

    public long OversizeReceivedFrames { get; private set; }

    public long FramesTransmitted { get; private set; }

    public long FramesSentInPlace { get; private set; }

    public long FramesCopied { get; private set; }

    public long TransmitErrors { get; private set; }

    /// <summary>Completion entries that named no outstanding descriptor (should stay 0).</summary>
    public long UnmatchedCompletions { get; private set; }

    /// <summary>
    /// TX descriptors whose completion has not come back yet (their frames and leases are held). The engine thread may read
    /// it while a turn on another thread changes it: a stale value only changes how long the engine waits.
    /// </summary>
    public int OutstandingTransmits => (int)(Volatile.Read(ref _sentTail) - Volatile.Read(ref _sentHead));

    /// <summary>Descriptors on the TX ring the kernel has not consumed yet.</summary>
    public uint TxOutstanding => _tx.Outstanding;

    public bool HasReceived => _rx.Available(1) != 0;

    /// <summary>
    /// Opens a socket, registers its UMEM (over <paramref name="pool"/>'s region, or private), maps and fills its rings
    /// and binds it to <paramref name="queue"/> of <paramref name="ifIndex"/>. Bound, not yet in the XDP program's map.
    /// </summary>
    public static XskSocket Open(AfXdpLinkOptions options, int ifIndex, int queue, AfXdpMode mode, PinnedBlockPool? pool, ILogger log)
    {
        var name = options.InterfaceName;
        var fd = LinuxNative.socket(LinuxNative.AF_XDP, LinuxNative.SOCK_RAW | LinuxNative.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno switch
            {
                Errno.EPERM or Errno.EACCES => new LinkException(
                    $"Opening an AF_XDP socket for interface '{name}' was refused ({Errno.Describe(errno)}): it needs CAP_NET_RAW. {AfXdpLink.GrantHint}", errno),
                EAFNOSUPPORT => new LinkException(
                    $"Opening an AF_XDP socket for interface '{name}' failed: {Errno.Describe(errno)}: this kernel has no AF_XDP (CONFIG_XDP_SOCKETS). Use Vso:Backend = AfPacket.", errno),
                _ => LinkException.FromErrno(errno, $"socket(AF_XDP) for interface '{name}'", "CAP_NET_RAW"),
            };
        }

        XdpUmem? umem = null;
        XskRing? fill = null, completion = null, rx = null, tx = null;
        try
        {
            umem = pool is null
                ? XdpUmem.RegisterPrivate(fd, options.FrameSize, options.RingSize, options.RingSize, name)
                : XdpUmem.RegisterOnPool(fd, pool, options.FrameSize, options.RingSize, options.RingSize, name);
            var ring = (uint)options.RingSize;
            SetRingSize(fd, LinuxNative.XDP_UMEM_FILL_RING, ring, "fill", name);
            SetRingSize(fd, LinuxNative.XDP_UMEM_COMPLETION_RING, ring, "completion", name);
            SetRingSize(fd, LinuxNative.XDP_RX_RING, ring, "RX", name);
            SetRingSize(fd, LinuxNative.XDP_TX_RING, ring, "TX", name);
            XdpMmapOffsets offsets;
            var length = (uint)sizeof(XdpMmapOffsets);
            if (LinuxNative.getsockopt(fd, LinuxNative.SOL_XDP, LinuxNative.XDP_MMAP_OFFSETS, &offsets, &length) < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"getsockopt XDP_MMAP_OFFSETS on '{name}'", "CAP_NET_RAW");
            }

            fill = XskRing.Map(fd, offsets.Fill, ring, 8, LinuxNative.XDP_UMEM_PGOFF_FILL_RING, isProducer: true, "fill");
            completion = XskRing.Map(fd, offsets.Completion, ring, 8, LinuxNative.XDP_UMEM_PGOFF_COMPLETION_RING, isProducer: false, "completion");
            rx = XskRing.Map(fd, offsets.Rx, ring, 16, LinuxNative.XDP_PGOFF_RX_RING, isProducer: false, "RX");
            tx = XskRing.Map(fd, offsets.Tx, ring, 16, LinuxNative.XDP_PGOFF_TX_RING, isProducer: true, "TX");

            // Every RX frame starts in the fill ring, which therefore can always take back what the RX ring hands over.
            for (var i = 0; i < options.RingSize; i++)
            {
                fill.Address(fill.Next + (uint)i) = umem.RxFrame(i);
            }

            fill.Submit(ring);
            var socket = new XskSocket(fd, name, queue, umem, fill, completion, rx, tx, log);
            socket.Bind(ifIndex, mode, multiBuffer: pool is not null);
            return socket;
        }
        catch
        {
            fill?.Dispose();
            completion?.Dispose();
            rx?.Dispose();
            tx?.Dispose();
            _ = LinuxNative.close(fd);
            umem?.Dispose();
            throw;
        }
    }

    /// <summary>Hands up to <paramref name="maxFrames"/> received frames to <paramref name="receiver"/>; their frames go straight back to the fill ring.</summary>
    public int Receive(IFrameReceiver receiver, int maxFrames, int maxFrame)
    {
        var rx = _rx;
        var count = rx.Available((uint)Math.Max(maxFrames, 0));
        if (count == 0)
        {
            return 0;
        }

        var handed = 0;
        var first = rx.Next;
        uint done = 0;
        var umem = _umem;
        try
        {
            for (; done < count; done++)
            {
                ref var d = ref rx.Descriptor(first + done);
                if (d.Length > maxFrame || (d.Options & LinuxNative.XDP_PKT_CONTD) != 0 || _continued)
                {
                    // A multi-buffer packet (larger than a frame): its pieces are dropped up to and with the last one.
                    if (!_continued)
                    {
                        OversizeReceivedFrames++;
                    }

                    _continued = (d.Options & LinuxNative.XDP_PKT_CONTD) != 0;
                    continue;
                }

                handed++;
                FramesReceived++;
                receiver.OnFrame(new ReadOnlySpan<byte>(umem.Base + umem.DataOf(d.Address), (int)d.Length));
            }
        }
        finally
        {
            // Frames read (and one the stack threw on, so it is not delivered again) go back to the fill ring.
            var returned = Math.Min(done + 1, count);
            var fill = _fill;
            for (uint i = 0; i < returned; i++)
            {
                fill.Address(fill.Next + i) = umem.FrameOf(rx.Descriptor(first + i).Address);
            }

            rx.Release(returned);
            fill.Submit(returned);
            if (fill.NeedsWakeup)
            {
                _ = LinuxNative.recvfrom(_fd, null, 0, LinuxNative.MSG_DONTWAIT, null, null);
            }
        }

        return handed;
    }

    private bool _continued;

    /// <summary>Puts frame <paramref name="index"/> of the batch on the TX ring (unsubmitted): in place if it can, else copied.</summary>
    public void Enqueue(TransmitBatch batch, int index)
    {
        ReapWhenLow();
        var gathers = batch.Gathers(index);
        var pieces = InPlaceTransmit && gathers.Length > 0 && batch.LeaseCount(index) == gathers.Length ? CountPieces(gathers) : 0;
        if (pieces > 0 && TryQueueInPlace(batch, index, gathers, pieces))
        {
            return;
        }

        if (!TryReserve(1, out var frame))
        {
            TransmitErrors++;
            return;
        }

        var written = batch.CopyFrame(index, _umem.Frame(frame, _umem.FrameSize));
        Put(new XdpDesc { Address = frame, Length = (uint)written }, OwnFrame, default);
        FramesCopied++;
        FramesTransmitted++;
    }

    /// <summary>Publishes what <see cref="Enqueue"/> put on the TX ring and kicks the kernel.</summary>
    public void Flush()
    {
        if (_queued != 0)
        {
            _tx.Submit(_queued);
            _queued = 0;
        }

        Kick();
    }

    /// <summary>Hands the TX ring to the kernel: copy mode sends in sendto, a budget of frames per call (EAGAIN: more to send).</summary>
    public void Kick()
    {
        var tx = _tx;
        for (var kicks = 0; kicks < AfXdpLink.MaxKicks && tx.Outstanding != 0; kicks++)
        {
            if (ZeroCopy && !tx.NeedsWakeup)
            {
                return;
            }

            if (LinuxNative.sendto(_fd, null, 0, LinuxNative.MSG_DONTWAIT, null, 0) >= 0)
            {
                continue;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno is Errno.EAGAIN or Errno.EINTR)
            {
                _ = Reap();
                continue;
            }

            if (errno == Errno.EBUSY)
            {
                // The device dropped a frame (NET_XMIT_DROP); the kernel completed it. TCP retransmits.
                TransmitErrors++;
                continue;
            }

            TransmitErrors++;
            if ((TransmitErrors & (TransmitErrors - 1)) == 0)
            {
                _log.TransmitFailed(_name, Errno.Describe(errno), TransmitErrors);
            }

            return;
        }
    }

    /// <summary>
    /// For descriptors still outstanding: a zero-copy driver produces completions in its NAPI poll, and when it sets the TX
    /// ring's need-wakeup flag it runs that poll only when kicked (sendto). Copy mode completes when the kernel frees each
    /// skb and keeps the flag set always, so a kick there would only cost a system call.
    /// </summary>
    public void WakeForCompletions()
    {
        if (ZeroCopy && _tx.NeedsWakeup)
        {
            _ = LinuxNative.sendto(_fd, null, 0, LinuxNative.MSG_DONTWAIT, null, 0);
        }
    }

    /// <summary>Takes what the completion ring gives back: TX frames to the free stack, in-place pieces' leases ended.</summary>
    public bool Reap()
    {
        var completion = _completion;
        var n = completion.Available(completion.Size);
        if (n == 0)
        {
            return false;
        }

        var first = completion.Next;
        for (uint i = 0; i < n; i++)
        {
            Complete(completion.Address(first + i));
        }

        completion.Release(n);
        return true;
    }

    /// <summary>
    /// The kernel's counters of this socket (XDP_STATISTICS): frames dropped for other reasons, because the RX ring was
    /// full, and times the fill ring was found empty.
    /// </summary>
    public (long Dropped, long RxRingFull, long FillRingEmpty) ReadKernelStatistics()
    {
        var stats = default(XdpStatistics);
        var length = (uint)sizeof(XdpStatistics);
        return LinuxNative.getsockopt(_fd, LinuxNative.SOL_XDP, LinuxNative.XDP_STATISTICS, &stats, &length) < 0
            ? (0, 0, 0)
            : ((long)stats.RxDropped, (long)stats.RxRingFull, (long)stats.RxFillRingEmpty);
    }

    public void Dispose()
    {
        if (_fd < 0)
        {
            return;
        }

        // The socket first: the kernel stops reading the UMEM, and then the leases of what it had not completed end.
        _fill.Dispose();
        _completion.Dispose();
        _rx.Dispose();
        _tx.Dispose();
        _ = LinuxNative.close(_fd);
        _fd = -1;
        for (var i = _sentHead; i != _sentTail; i++)
        {
            _sentLease[i & _sentMask].Dispose();
            _sentLease[i & _sentMask] = default;
        }

        _umem.Dispose();
    }

    /// <summary>Payload descriptors the gathers need (cut so none crosses a frame-sized boundary of the UMEM), 0 if a piece lies outside it or there are too many.</summary>
    private int CountPieces(ReadOnlySpan<GatherSegment> gathers)
    {
        var pieces = 0;
        var chunk = (ulong)_umem.FrameSize;
        foreach (var g in gathers)
        {
            if (g.Length <= 0 || !_umem.TryOffsetOf(g.Address, g.Length, out var offset))
            {
                return 0;
            }

            // Pieces of at most a chunk that never cross a page: what an unaligned descriptor may name (a zero-copy
            // driver maps pages one by one; copy mode takes at most chunk_size per descriptor).
            pieces += (int)((((offset % chunk) + (ulong)g.Length) + chunk - 1) / chunk);
        }

        return pieces + 1 <= MaxDescriptorsPerPacket ? pieces : 0;
    }

    private bool TryQueueInPlace(TransmitBatch batch, int index, ReadOnlySpan<GatherSegment> gathers, int pieces)
    {
        if (!TryReserve((uint)(pieces + 1), out var frame))
        {
            return false;
        }

        var linear = batch.Linear(index);
        linear.CopyTo(_umem.Frame(frame, _umem.FrameSize));
        Put(new XdpDesc { Address = frame, Length = (uint)linear.Length, Options = LinuxNative.XDP_PKT_CONTD }, OwnFrame, default);
        var chunk = (ulong)_umem.FrameSize;
        var left = pieces;
        for (var g = 0; g < gathers.Length; g++)
        {
            _ = _umem.TryOffsetOf(gathers[g].Address, gathers[g].Length, out var offset);
            var remaining = (ulong)gathers[g].Length;

            // The gather's lease goes with its last piece, which completes after the others.
            var lease = batch.TakeLease(index, g);
            while (remaining > 0)
            {
                var length = Math.Min(remaining, chunk - (offset % chunk));
                left--;
                remaining -= length;
                Put(
                    new XdpDesc { Address = offset, Length = (uint)length, Options = left == 0 ? 0 : LinuxNative.XDP_PKT_CONTD },
                    InPlace,
                    remaining == 0 ? lease : default);
                offset += length;
            }
        }

        FramesSentInPlace++;
        FramesTransmitted++;
        return true;
    }

    /// <summary>Room for <paramref name="descriptors"/> more on the TX ring and in the record, and a TX frame; reaps and kicks once if not.</summary>
    private bool TryReserve(uint descriptors, out ulong frame)
    {
        for (var attempt = 0; attempt < 2; attempt++)
        {
            if (_tx.Free(_queued + descriptors) >= _queued + descriptors
                && _sentTail - _sentHead + descriptors <= _sentMask + 1
                && _umem.TryRentTx(out frame))
            {
                return true;
            }

            // Everything is on its way: let the kernel send what is queued and give frames back.
            Flush();
            _ = Reap();
        }

        frame = 0;
        return false;
    }

    private void Put(XdpDesc descriptor, byte state, PinLease lease)
    {
        _tx.Descriptor(_tx.Next + _queued) = descriptor;
        _queued++;
        var i = _sentTail++ & _sentMask;
        _sentAddress[i] = descriptor.Address;
        _sentState[i] = state;
        _sentLease[i] = lease;
    }

    /// <summary>Reaps when fewer than a quarter of the TX frames are free, so frames come back without a kick per frame.</summary>
    private void ReapWhenLow()
    {
        if (_umem.FreeTxFrames < (int)(_tx.Size / 4) || _sentTail - _sentHead > _sentMask - (_sentMask / 4))
        {
            _ = Reap();
        }
    }

    /// <summary>
    /// Ends the oldest outstanding descriptor with this address. The kernel completes in the order it consumed, so that
    /// is normally the oldest of all; a descriptor it skipped (refused as invalid) is passed over, still outstanding.
    /// </summary>
    private void Complete(ulong address)
    {
        var end = _sentHead + Math.Min(_sentTail - _sentHead, (uint)CompletionSearch);
        for (var j = _sentHead; j != end; j++)
        {
            var i = j & _sentMask;
            if (_sentState[i] == Free || _sentAddress[i] != address)
            {
                continue;
            }

            if (_sentState[i] == OwnFrame)
            {
                _umem.ReturnTx(address);
            }

            _sentState[i] = Free;
            _sentLease[i].Dispose();
            _sentLease[i] = default;
            while (_sentHead != _sentTail && _sentState[_sentHead & _sentMask] == Free)
            {
                _sentHead++;
            }

            return;
        }

        UnmatchedCompletions++;
    }

    private void Bind(int ifIndex, AfXdpMode mode, bool multiBuffer)
    {
        // Auto sets neither XDP_COPY nor XDP_ZEROCOPY: the kernel tries zero-copy and falls back to copy itself.
        var flags = (ushort)(LinuxNative.XDP_USE_NEED_WAKEUP | mode switch
        {
            AfXdpMode.ZeroCopy => LinuxNative.XDP_ZEROCOPY,
            AfXdpMode.Auto => 0,
            _ => LinuxNative.XDP_COPY,
        });
        int errno;
        if (!multiBuffer)
        {
            errno = TryBind(ifIndex, flags);
        }
        else
        {
            errno = TryBind(ifIndex, (ushort)(flags | LinuxNative.XDP_USE_SG));
            InPlaceTransmit = errno == 0;
            if (errno is Errno.EOPNOTSUPP or Errno.EINVAL)
            {
                // A kernel or driver without multi-buffer AF_XDP: every frame is copied into a UMEM frame.
                _log.AfXdpFallback(_name, $"queue {Queue}: no multi-buffer AF_XDP (XDP_USE_SG: {Errno.Describe(errno)})", "frames copied into the UMEM");
                errno = TryBind(ifIndex, flags);
            }
        }

        if (errno != 0)
        {
            throw errno switch
            {
                Errno.EOPNOTSUPP when mode == AfXdpMode.ZeroCopy => new LinkException(
                    $"Binding an AF_XDP socket to '{_name}' queue {Queue} in zero-copy mode failed: {Errno.Describe(errno)}: its driver has no zero-copy AF_XDP " +
                    "(veth, for one, has none). Set Vso:AfXdp:Mode = Auto (zero-copy where the driver has it, copy otherwise) or Copy.",
                    errno),
                Errno.EBUSY => new LinkException(
                    $"Binding an AF_XDP socket to '{_name}' queue {Queue} failed: {Errno.Describe(errno)}: another AF_XDP socket is bound to that queue. " +
                    "Stop it or choose another queue (Vso:AfXdp:Queue).",
                    errno),
                Errno.EINVAL => new LinkException(
                    $"Binding an AF_XDP socket to '{_name}' queue {Queue} failed: {Errno.Describe(errno)}. Check that the queue exists (`ethtool -l {_name}`).",
                    errno),
                _ => LinkException.FromErrno(errno, $"binding an AF_XDP socket to '{_name}' queue {Queue}", "CAP_NET_RAW"),
            };
        }

        var options = default(uint);
        var length = 4u;
        ZeroCopy = LinuxNative.getsockopt(_fd, LinuxNative.SOL_XDP, LinuxNative.XDP_OPTIONS, &options, &length) == 0
            && (options & LinuxNative.XDP_OPTIONS_ZEROCOPY) != 0;
    }

    private int TryBind(int ifIndex, ushort flags)
    {
        var address = new SockAddrXdp { Family = LinuxNative.AF_XDP, Flags = flags, IfIndex = (uint)ifIndex, QueueId = (uint)Queue };
        return LinuxNative.bind(_fd, &address, (uint)sizeof(SockAddrXdp)) < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    private static void SetRingSize(int fd, int option, uint size, string what, string name)
    {
        if (LinuxNative.setsockopt(fd, LinuxNative.SOL_XDP, option, &size, 4) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"setting the AF_XDP {what} ring of '{name}' to {size} entries", "CAP_NET_RAW");
        }
    }
}
