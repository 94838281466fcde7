using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.Transport.Native;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// An AF_XDP socket bound to one receive queue of an interface (Documentation/networking/af_xdp.rst), with the stack's
/// own XDP program (<see cref="XdpRedirectProgram"/>) steering to it only ARP for the stack's address and IPv4 addressed
/// to the stack; everything else stays the kernel's. Frames live in a UMEM (<see cref="XdpUmem"/>): received frames are
/// read in place from the RX ring and their UMEM frames go straight back to the fill ring; a transmitted frame is
/// copied once, at send time, from the batch (headers and gathered payload) into a free UMEM TX frame, whose
/// descriptor goes on the TX ring; the completion ring gives the frame back. With XDP_USE_NEED_WAKEUP the kernel is
/// kicked only when it asks (sendto for TX, recvfrom for the fill ring); in copy mode every TX batch takes a sendto,
/// in which the kernel sends it. The engine sleeps in ppoll on the socket (POLLIN: the RX ring has frames).
/// </summary>
internal sealed unsafe class AfXdpLink : ILink
{
    /// <summary>XDP_PACKET_HEADROOM: what the kernel keeps in front of a received frame in its UMEM frame.</summary>
    private const int KernelHeadroom = 256;

    /// <summary>Kicks of the TX ring per Transmit before the rest is left to the next one (copy mode sends 32 frames per kick).</summary>
    private const int MaxKicks = 256;

    internal const string GrantHint =
        "Run as root, or grant the capabilities to the program: `sudo setcap cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock+ep <program>` " +
        "(for `dotnet app.dll` that is the dotnet host; an apphost or a single-file publish is better), " +
        "or in a container add `--cap-add NET_RAW --cap-add NET_ADMIN --cap-add BPF --cap-add IPC_LOCK`.";

    private readonly ILogger _log;
    private readonly string _name;
    private readonly LinkWaker _waker;
    private int _fd;
    private XdpUmem? _umem;
    private XskRing? _fill;
    private XskRing? _completion;
    private XskRing? _rx;
    private XskRing? _tx;
    private XdpRedirectProgram? _program;
    private bool _disposed;

    public AfXdpLink(AfXdpLinkOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _log = logger ?? NullLogger.Instance;
        _name = options.InterfaceName;
        Queue = options.Queue;

        _fd = LinuxNative.socket(LinuxNative.AF_XDP, LinuxNative.SOCK_RAW | LinuxNative.SOCK_CLOEXEC, 0);
        if (_fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno switch
            {
                Errno.EPERM or Errno.EACCES => new LinkException(
                    $"Opening an AF_XDP socket for interface '{_name}' was refused ({Errno.Describe(errno)}): it needs CAP_NET_RAW. {GrantHint}", errno),
                EAFNOSUPPORT => new LinkException(
                    $"Opening an AF_XDP socket for interface '{_name}' failed: {Errno.Describe(errno)}: this kernel has no AF_XDP (CONFIG_XDP_SOCKETS). Use Vso:Backend = AfPacket.", errno),
                _ => LinkException.FromErrno(errno, $"socket(AF_XDP) for interface '{_name}'", "CAP_NET_RAW"),
            };
        }

        try
        {
            var index = NetDevice.IndexOf(_name);
            var queues = QueryDevice(options);
            if (KernelHeadroom + EthernetFrame.HeaderLength + Mtu > options.FrameSize)
            {
                throw new LinkException(
                    $"Interface '{_name}' has MTU {Mtu}: a frame and the kernel's {KernelHeadroom}-byte headroom do not fit an AF_XDP frame of {options.FrameSize} bytes " +
                    $"(multi-buffer frames are not supported yet). Lower the MTU to {options.FrameSize - KernelHeadroom - EthernetFrame.HeaderLength} or less (`ip link set {_name} mtu N`), or use Vso:Backend = AfPacket.");
            }

            var ring = (uint)options.RingSize;
            _umem = XdpUmem.Register(_fd, options.FrameSize, options.RingSize, options.RingSize, _name);
            SetRingSize(LinuxNative.XDP_UMEM_FILL_RING, ring, "fill");
            SetRingSize(LinuxNative.XDP_UMEM_COMPLETION_RING, ring, "completion");
            SetRingSize(LinuxNative.XDP_RX_RING, ring, "RX");
            SetRingSize(LinuxNative.XDP_TX_RING, ring, "TX");
            XdpMmapOffsets offsets;
            var length = (uint)sizeof(XdpMmapOffsets);
            if (LinuxNative.getsockopt(_fd, LinuxNative.SOL_XDP, LinuxNative.XDP_MMAP_OFFSETS, &offsets, &length) < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"getsockopt XDP_MMAP_OFFSETS on '{_name}'", "CAP_NET_RAW");
            }

            _fill = XskRing.Map(_fd, offsets.Fill, ring, 8, LinuxNative.XDP_UMEM_PGOFF_FILL_RING, isProducer: true, "fill");
            _completion = XskRing.Map(_fd, offsets.Completion, ring, 8, LinuxNative.XDP_UMEM_PGOFF_COMPLETION_RING, isProducer: false, "completion");
            _rx = XskRing.Map(_fd, offsets.Rx, ring, 16, LinuxNative.XDP_PGOFF_RX_RING, isProducer: false, "RX");
            _tx = XskRing.Map(_fd, offsets.Tx, ring, 16, LinuxNative.XDP_PGOFF_TX_RING, isProducer: true, "TX");

            // Every RX frame starts in the fill ring, which therefore can always take back what the RX ring hands over.
            for (var i = 0; i < options.RingSize; i++)
            {
                _fill.Address(_fill.Next + (uint)i) = _umem.RxFrame(i);
            }

            _fill.Submit(ring);

            _program = XdpRedirectProgram.Load(options.Address, Math.Max(queues, options.Queue + 1), _name);
            Bind(index, options.Mode);
            _program.SetSocket(options.Queue, _fd, _name);
            Attach(index, options.Mode);
            _waker = new LinkWaker();
        }
        catch
        {
            Release();
            throw;
        }

        _log.LinkOpened("AF_XDP", _name, HardwareAddress.ToString(), Mtu,
            $"queue {Queue}, {(GenericXdp ? "generic (SKB) XDP" : "native XDP")}, {(ZeroCopy ? "zero-copy" : "copy mode")}, " +
            $"rings {options.RingSize}, UMEM {_umem.Length} B in frames of {options.FrameSize} B");
    }

    public MacAddress HardwareAddress { get; private set; }

    public int Mtu { get; private set; }

    public long NextEventMicroseconds => long.MaxValue;

    public bool CanBlock => true;

    public string InterfaceName => _name;

    /// <summary>The receive queue the socket is bound to.</summary>
    public int Queue { get; }

    /// <summary>Whether the socket runs in zero-copy mode (the driver reads and writes the UMEM), rather than copy mode.</summary>
    public bool ZeroCopy { get; private set; }

    /// <summary>Whether the XDP program runs in generic (SKB) mode rather than in the driver.</summary>
    public bool GenericXdp => _program?.Generic ?? false;

    /// <summary>Frames handed to the stack.</summary>
    public long FramesReceived { get; private set; }

    /// <summary>Received frames larger than the MTU allows, dropped.</summary>
    public long OversizeReceivedFrames { get; private set; }

    /// <summary>Frames the stack asked to send that were larger than the MTU allows, not sent.</summary>
    public long OversizeTransmitFrames { get; private set; }

    /// <summary>Frames put on the TX ring.</summary>
    public long FramesTransmitted { get; private set; }

    /// <summary>Frames dropped on the way out (no free UMEM frame, the kernel refused): TCP retransmits them.</summary>
    public long TransmitErrors { get; private set; }

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var rx = _rx!;
        var count = rx.Available((uint)Math.Max(maxFrames, 0));
        if (count == 0)
        {
            return 0;
        }

        var handed = 0;
        var first = rx.Next;
        uint done = 0;
        try
        {
            for (; done < count; done++)
            {
                ref var d = ref rx.Descriptor(first + done);
                if (d.Length > Mtu + EthernetFrame.HeaderLength)
                {
                    OversizeReceivedFrames++;
                    continue;
                }

                handed++;
                FramesReceived++;
                receiver.OnFrame(new ReadOnlySpan<byte>(_umem!.Base + d.Address, (int)d.Length));
            }
        }
        finally
        {
            // Frames read (and one the stack threw on, so it is not delivered again) go back to the fill ring.
            var returned = Math.Min(done + 1, count);
            for (uint i = 0; i < returned; i++)
            {
                _fill!.Address(_fill.Next + i) = _umem!.FrameOf(rx.Descriptor(first + i).Address);
            }

            rx.Release(returned);
            _fill!.Submit(returned);
            if (_fill.NeedsWakeup)
            {
                _ = LinuxNative.recvfrom(_fd, null, 0, LinuxNative.MSG_DONTWAIT, null, null);
            }
        }

        return handed;
    }

    public void Transmit(TransmitBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (batch.Count == 0)
        {
            return;
        }

        var umem = _umem!;
        var tx = _tx!;
        ReapCompletions();
        var maxFrame = Mtu + EthernetFrame.HeaderLength;
        uint queued = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            var length = batch.FrameLength(i);
            if (length > maxFrame || batch.GsoSize(i) != 0)
            {
                OversizeTransmitFrames++;
                _log.OversizeTransmit(_name, length, Mtu, OversizeTransmitFrames);
                continue;
            }

            if (!umem.TryRentTx(out var address))
            {
                // Every TX frame is on its way: let the kernel send what is queued and give frames back.
                tx.Submit(queued);
                queued = 0;
                Kick();
                ReapCompletions();
                if (!umem.TryRentTx(out address))
                {
                    TransmitErrors++;
                    continue;
                }
            }

            // A rented frame guarantees a TX slot: the ring has as many entries as there are TX frames.
            var written = batch.CopyFrame(i, umem.Frame(address, umem.FrameSize));
            tx.Descriptor(tx.Next + queued) = new XdpDesc { Address = address, Length = (uint)written };
            queued++;
            FramesTransmitted++;
        }

        tx.Submit(queued);
        Kick();
    }

    public bool WaitForFrames(TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_rx!.Available(1) != 0)
        {
            return true;
        }

        if (_tx!.Outstanding != 0)
        {
            // Frames a kick left on the TX ring: send them, and come back soon if some still wait.
            Kick();
            if (_tx.Outstanding != 0 && (timeout < TimeSpan.Zero || timeout > TimeSpan.FromMilliseconds(1)))
            {
                timeout = TimeSpan.FromMilliseconds(1);
            }
        }

        _ = _waker.Wait(_fd, LinuxNative.POLLIN, timeout);
        return _rx.Available(1) != 0;
    }

    public void Interrupt() => _waker?.Interrupt();

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
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Release();
        _waker?.Dispose();
    }

    private const int EAFNOSUPPORT = 97;

    /// <summary>Hands the TX ring to the kernel: copy mode sends in sendto, a budget of frames per call (EAGAIN: more to send).</summary>
    private void Kick()
    {
        var tx = _tx!;
        for (var kicks = 0; kicks < MaxKicks && tx.Outstanding != 0; kicks++)
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
                ReapCompletions();
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

    private void ReapCompletions()
    {
        var completion = _completion!;
        var n = completion.Available(completion.Size);
        if (n == 0)
        {
            return;
        }

        var first = completion.Next;
        for (uint i = 0; i < n; i++)
        {
            _umem!.ReturnTx(completion.Address(first + i));
        }

        completion.Release(n);
    }

    /// <summary>Reads the MTU, MAC and receive queue count with a throwaway AF_INET socket (AF_XDP sockets take no SIOC* ioctls).</summary>
    private int QueryDevice(AfXdpLinkOptions options)
    {
        var control = LinuxNative.socket(LinuxNative.AF_INET, LinuxNative.SOCK_DGRAM | LinuxNative.SOCK_CLOEXEC, 0);
        if (control < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), "socket(AF_INET) for the interface ioctls");
        }

        try
        {
            NetDevice.EnsureUp(control, _name);
            Mtu = NetDevice.GetMtu(control, _name);
            HardwareAddress = NetDevice.GetHardwareAddress(control, _name);
            var channels = new EthtoolChannels { Command = LinuxNative.ETHTOOL_GCHANNELS };
            var request = IfReq.For(_name);
            *(EthtoolChannels**)request.Union = &channels;
            if (LinuxNative.ioctl(control, LinuxNative.SIOCETHTOOL, &request) < 0)
            {
                return options.Queue + 1; // the driver does not say: the bind will tell
            }

            var queues = (int)(channels.RxCount + channels.CombinedCount);
            if (queues > 0 && options.Queue >= queues)
            {
                throw new LinkException(
                    $"Receive queue {options.Queue} of '{_name}' does not exist: it has {queues} receive queue(s), 0 to {queues - 1} (`ethtool -l {_name}`). " +
                    "Set Vso:AfXdp:Queue to one of them.",
                    Errno.EINVAL);
            }

            return Math.Max(queues, 1);
        }
        finally
        {
            _ = LinuxNative.close(control);
        }
    }

    private void SetRingSize(int option, uint size, string what)
    {
        if (LinuxNative.setsockopt(_fd, LinuxNative.SOL_XDP, option, &size, 4) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"setting the AF_XDP {what} ring of '{_name}' to {size} entries", "CAP_NET_RAW");
        }
    }

    private void Bind(int index, AfXdpMode mode)
    {
        // Auto sets neither XDP_COPY nor XDP_ZEROCOPY: the kernel tries zero-copy and falls back to copy itself.
        var flags = (ushort)(LinuxNative.XDP_USE_NEED_WAKEUP | mode switch
        {
            AfXdpMode.ZeroCopy => LinuxNative.XDP_ZEROCOPY,
            AfXdpMode.Auto => 0,
            _ => LinuxNative.XDP_COPY,
        });
        var address = new SockAddrXdp { Family = LinuxNative.AF_XDP, Flags = flags, IfIndex = (uint)index, QueueId = (uint)Queue };
        if (LinuxNative.bind(_fd, &address, (uint)sizeof(SockAddrXdp)) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
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
        if (mode == AfXdpMode.Auto && !ZeroCopy)
        {
            _log.AfXdpFallback(_name, "the driver has no zero-copy AF_XDP", "copy mode");
        }
    }

    private void Attach(int index, AfXdpMode mode)
    {
        var program = _program!;
        var errno = program.Attach(index, generic: mode == AfXdpMode.Skb, _name);
        if (errno == 0)
        {
            return;
        }

        if (mode != AfXdpMode.Auto)
        {
            throw new LinkException(
                $"Attaching the stack's XDP program to '{_name}' in native mode failed: {Errno.Describe(errno)}: its driver has no native XDP. " +
                "Set Vso:AfXdp:Mode = Skb (generic XDP) or Auto, or use Vso:Backend = AfPacket.",
                errno);
        }

        _log.AfXdpFallback(_name, $"the driver has no native XDP ({Errno.Describe(errno)})", "generic (SKB) XDP");
        _ = program.Attach(index, generic: true, _name);
    }

    private void Release()
    {
        // The program first, so the kernel stops redirecting to the socket; the socket before the UMEM it pins.
        _program?.Dispose();
        _program = null;
        _fill?.Dispose();
        _completion?.Dispose();
        _rx?.Dispose();
        _tx?.Dispose();
        _fill = _completion = _rx = _tx = null;
        if (_fd >= 0)
        {
            _ = LinuxNative.close(_fd);
            _fd = -1;
        }

        _umem?.Dispose();
        _umem = null;
    }
}
