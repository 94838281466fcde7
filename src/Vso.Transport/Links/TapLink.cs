using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.Transport.Native;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// A TAP device (/dev/net/tun, IFF_TAP | IFF_NO_PI): the stack is the far end of a virtual Ethernet wire whose
/// near end is a kernel interface. Attaches to an existing device or creates one (optionally with an MTU and a
/// kernel-side address). Receives with read(2) per frame, sends each frame with one writev(2) that gathers the
/// headers and the host's pinned payload. The device and fd stay in the network namespace they were opened in.
/// With segmentation offload (IFF_VNET_HDR) every frame carries a virtio_net_hdr both ways: the stack writes TCP
/// super-segments that the kernel takes whole, and reads the kernel's TSO super-frames and frames whose checksum the
/// kernel left to finish (VIRTIO_NET_HDR_F_NEEDS_CSUM), finished here before the stack checks them.
/// A multi-queue device (IFF_MULTI_QUEUE) has one fd per queue: each link opens one queue, and the kernel spreads the
/// flows it sends over the queues by its own flow hash, or, once a stack's queue 0 has attached
/// <see cref="TapSteeringProgram"/>, by the stack's.
/// </summary>
internal sealed unsafe class TapLink : ILink, ILinkCounters
{
    private const int MaxIov = TransmitBatch.MaxGather + 2;

    /// <summary>Largest IPv4 packet: 65,535 bytes, less the IPv4 header and the largest TCP header.</summary>
    private const int MaxGsoPayload = 65_535 - 20 - 60;

    /// <summary>The kernel's limit of queues per TAP device (MAX_TAP_QUEUES).</summary>
    internal const int MaxQueues = 256;

    private readonly ILogger _log;
    private readonly string _name;
    private readonly LinkWaker _waker;
    private readonly byte[] _receiveBuffer;
    private readonly bool _offload;
    private int _fd;
    private bool _steering;
    private bool _disposed;

    public TapLink(TapLinkOptions options, ILogger? logger = null)
        : this(options, 0, 1, logger)
    {
    }

    /// <summary>
    /// Opens queue <paramref name="queue"/> of a device with <paramref name="queueCount"/> queues (one per engine shard).
    /// With more than one, the device is multi-queue (IFF_MULTI_QUEUE): whichever queue opens first creates it, queue 0
    /// sets its MTU and kernel-side address, and every queue takes the same MAC (<see cref="TapLinkOptions.HardwareAddress"/>,
    /// or one derived from the kernel side's, since the kernel keeps one neighbour entry for the stack's address).
    /// With <paramref name="steer"/>, queue 0 attaches <see cref="TapSteeringProgram"/> to the device, so that each flow
    /// the kernel sends arrives on the queue of the shard that owns it, and detaches it when disposed.
    /// </summary>
    internal TapLink(TapLinkOptions options, int queue, int queueCount, ILogger? logger = null, bool steer = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfLessThan(queueCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(queueCount, MaxQueues);
        ArgumentOutOfRangeException.ThrowIfNegative(queue);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(queue, queueCount);
        _log = logger ?? NullLogger.Instance;
        _name = options.Name;
        _offload = options.SegmentationOffload;
        Queue = queue;

        var exists = LinuxNative.if_nametoindex(_name) != 0;
        if (!exists && !options.Create)
        {
            throw new LinkException(
                $"TAP device '{_name}' does not exist in this network namespace. Create it (`ip tuntap add dev {_name} mode tap && ip link set {_name} up`) " +
                "or set TapLinkOptions.Create = true.",
                Errno.ENODEV);
        }

        _fd = LinuxNative.open("/dev/net/tun", LinuxNative.O_RDWR | LinuxNative.O_NONBLOCK | LinuxNative.O_CLOEXEC);
        if (_fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno == Errno.ENOENT
                ? new LinkException("/dev/net/tun does not exist: load the tun module (`modprobe tun`) or, in a container, add `--device /dev/net/tun`.", errno)
                : LinkException.FromErrno(errno, "open /dev/net/tun");
        }

        var control = -1;
        var multiQueue = queueCount > 1;
        try
        {
            var flags = LinuxNative.IFF_TAP | LinuxNative.IFF_NO_PI | (_offload ? LinuxNative.IFF_VNET_HDR : 0);
            var request = IfReq.For(_name);
            request.Flags = (short)(flags | (multiQueue ? LinuxNative.IFF_MULTI_QUEUE : 0));
            var result = LinuxNative.ioctl(_fd, LinuxNative.TUNSETIFF, &request);
            if (result < 0 && exists && !multiQueue && Marshal.GetLastPInvokeError() == Errno.EINVAL)
            {
                // One queue of an existing device made multi-queue (`ip tuntap add ... multi_queue`): the kernel wants the
                // flag to match the device's.
                request = IfReq.For(_name);
                request.Flags = (short)(flags | LinuxNative.IFF_MULTI_QUEUE);
                result = LinuxNative.ioctl(_fd, LinuxNative.TUNSETIFF, &request);
            }

            if (result < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw errno switch
                {
                    Errno.EPERM or Errno.EACCES => new LinkException(
                        $"Attaching to TAP device '{_name}' was refused ({Errno.Describe(errno)}): it needs CAP_NET_ADMIN " +
                        $"(or a persistent device owned by this user: `ip tuntap add dev {_name} mode tap user $USER`). {LinkException.GrantHint}",
                        errno),
                    Errno.EINVAL when multiQueue => new LinkException(
                        $"Interface '{_name}' exists but is not a multi-queue TAP device ({Errno.Describe(errno)}), which {queueCount} engines need (one queue each): " +
                        $"make it with `ip tuntap add dev {_name} mode tap multi_queue`, let the link create it, or use one engine (Engines = 1).",
                        errno),
                    Errno.EINVAL => new LinkException($"Interface '{_name}' exists but is not a TAP device ({Errno.Describe(errno)}).", errno),
                    Errno.EBUSY => new LinkException($"TAP device '{_name}' is already attached to another process ({Errno.Describe(errno)}).", errno),
                    _ => LinkException.FromErrno(errno, $"TUNSETIFF '{_name}'"),
                };
            }

            ConfigureOffload();
            if (steer && multiQueue && queue == 0)
            {
                AttachSteering(queueCount);
            }

            control = LinuxNative.socket(LinuxNative.AF_INET, LinuxNative.SOCK_DGRAM | LinuxNative.SOCK_CLOEXEC, 0);
            if (control < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), "socket(AF_INET) for interface configuration");
            }

            // The device's settings are shared by its queues: queue 0 sets them, once.
            if (options.Mtu is { } mtu && queue == 0)
            {
                NetDevice.SetMtu(control, _name, mtu);
            }

            if (options.KernelIpv4 is { } kernelAddress && queue == 0)
            {
                NetDevice.SetAddress(control, _name, kernelAddress, options.KernelPrefixLength);
            }

            if (!exists)
            {
                NetDevice.SetUp(control, _name);
            }
            else
            {
                NetDevice.EnsureUp(control, _name);
            }

            Mtu = NetDevice.GetMtu(control, _name);
            var kernelMac = NetDevice.GetHardwareAddress(control, _name);
            HardwareAddress = options.Mac ?? (multiQueue ? DerivedMac(kernelMac) : RandomMac(kernelMac));
            _receiveBuffer = GC.AllocateUninitializedArray<byte>(65536 + 64, pinned: true);
            _waker = new LinkWaker();
            Created = !exists;
        }
        catch
        {
            DetachSteering();
            _ = LinuxNative.close(_fd);
            _fd = -1;
            throw;
        }
        finally
        {
            if (control >= 0)
            {
                _ = LinuxNative.close(control);
            }
        }

        _log.LinkOpened("TAP", _name, HardwareAddress.ToString(), Mtu,
            (Created ? $"created{(options.KernelIpv4 is { } a && queue == 0 ? $", kernel side {a}/{options.KernelPrefixLength}" : "")}" : "attached") +
            (multiQueue ? $", queue {queue} of {queueCount}{(_steering ? ", flows steered to the engines' queues" : "")}" : "") + $", segmentation offload {_offload}");
    }

    /// <summary>Up to 64 KiB of TCP payload per super-segment with <see cref="TapLinkOptions.SegmentationOffload"/>, else 0.</summary>
    public int MaxOffloadPayload => _offload ? MaxGsoPayload : 0;

    public MacAddress HardwareAddress { get; }

    public int Mtu { get; }

    public long NextEventMicroseconds => long.MaxValue;

    public bool CanBlock => true;

    public string Name => _name;

    /// <summary>Whether the link created the device (then it disappears when the link is disposed).</summary>
    public bool Created { get; }

    public long FramesReceived { get; private set; }

    public long FramesTransmitted { get; private set; }

    /// <summary>Received frames larger than the MTU allows, dropped.</summary>
    public long OversizeReceivedFrames { get; private set; }

    public long OversizeTransmitFrames { get; private set; }

    public long TransmitErrors { get; private set; }

    /// <summary>The queue of the device this link reads and writes (0 unless multi-queue).</summary>
    internal int Queue { get; }

    /// <summary>Whether this link attached the device's steering program (queue 0 of a sharded stack) and has not detached it.</summary>
    internal bool Steering => _steering;

    /// <summary>Loads <see cref="TapSteeringProgram"/> for <paramref name="queueCount"/> queues and attaches it to the device (the device keeps its own reference).</summary>
    internal void AttachSteering(int queueCount)
    {
        using var program = TapSteeringProgram.Load(queueCount, _name);
        program.Attach(_fd, _name);
        _steering = true;
    }

    /// <summary>Detaches the device's steering program: the kernel's own flow hash picks the queues again.</summary>
    internal void DetachSteering()
    {
        if (_steering && _fd >= 0)
        {
            _steering = !TapSteeringProgram.Detach(_fd);
        }
    }

    /// <summary>Super-segments written with a TCPv4 virtio_net_hdr (segmentation offload), each counted once in <see cref="FramesTransmitted"/>.</summary>
    internal long SuperSegmentsTransmitted { get; private set; }

    /// <summary>TSO super-frames the kernel handed over whole (VIRTIO_NET_HDR_GSO_TCPV4), larger than the MTU.</summary>
    internal long SuperFramesReceived { get; private set; }

    /// <summary>Received frames whose checksum the kernel left to finish (VIRTIO_NET_HDR_F_NEEDS_CSUM), finished here.</summary>
    internal long ChecksumsCompleted { get; private set; }

    /// <summary>Received frames dropped for a virtio_net_hdr the link cannot honour (a GSO type it did not offer, checksum offsets outside the frame).</summary>
    public long BadOffloadFrames { get; private set; }

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var handed = 0;
        var maxFrame = Mtu + EthernetFrame.HeaderLength;
        var header = _offload ? sizeof(VirtioNetHeader) : 0;
        fixed (byte* buffer = _receiveBuffer)
        {
            while (handed < maxFrames)
            {
                var n = LinuxNative.read(_fd, buffer, (nuint)_receiveBuffer.Length);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR)
                    {
                        continue;
                    }

                    if (errno != Errno.EAGAIN)
                    {
                        _log.ReceiveFailed(_name, Errno.Describe(errno));
                    }

                    break;
                }

                if (n <= header)
                {
                    break;
                }

                var frame = buffer + header;
                var length = (int)n - header;
                var superFrame = false;
                if (_offload && !AcceptOffloaded(*(VirtioNetHeader*)buffer, new Span<byte>(frame, length), out superFrame))
                {
                    continue;
                }

                if (length > maxFrame && !superFrame)
                {
                    OversizeReceivedFrames++;
                    if ((OversizeReceivedFrames & (OversizeReceivedFrames - 1)) == 0)
                    {
                        _log.OversizeReceived(_name, OversizeReceivedFrames, length, Mtu);
                    }

                    continue;
                }

                handed++;
                FramesReceived++;
                receiver.OnFrame(new ReadOnlySpan<byte>(frame, length));
            }
        }

        return handed;
    }

    public void Transmit(TransmitBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var iov = stackalloc IoVec[MaxIov];
        var vnet = stackalloc VirtioNetHeader[1];
        var maxFrame = Mtu + EthernetFrame.HeaderLength;
        for (var i = 0; i < batch.Count; i++)
        {
            var length = batch.FrameLength(i);
            var gso = _offload ? batch.GsoSize(i) : 0;
            if (length > maxFrame && (gso == 0 || length > MaxGsoPayload + 60 + 20 + EthernetFrame.HeaderLength))
            {
                OversizeTransmitFrames++;
                _log.OversizeTransmit(_name, length, Mtu, OversizeTransmitFrames);
                continue;
            }

            var linear = batch.Linear(i).Length;
            var n = 0;
            if (_offload)
            {
                // As on AF_PACKET: no offload for an ordinary frame, whose checksums are complete; TCPv4 GSO for a
                // super-segment, whose TCP checksum field holds the pseudo-header sum. The kernel takes it whole (tun
                // builds one skb: headers linear, payload in pages) and cuts it only if it must forward it.
                *vnet = gso == 0 ? default : VirtioNetHeader.TcpV4(linear, gso);
                iov[n++] = new IoVec { Base = vnet, Length = (nuint)sizeof(VirtioNetHeader) };
            }

            iov[n++] = new IoVec { Base = (void*)batch.LinearAddress(i), Length = (nuint)linear };
            foreach (var g in batch.Gathers(i))
            {
                iov[n++] = new IoVec { Base = (void*)g.Address, Length = (nuint)g.Length };
            }

            for (var attempt = 0; ; attempt++)
            {
                if (LinuxNative.writev(_fd, iov, n) >= 0)
                {
                    FramesTransmitted++;
                    if (gso != 0)
                    {
                        SuperSegmentsTransmitted++;
                    }

                    break;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                if (errno == Errno.EAGAIN && attempt < 100)
                {
                    _ = _waker.Wait(_fd, LinuxNative.POLLOUT, TimeSpan.FromMilliseconds(1));
                    continue;
                }

                TransmitErrors++;
                if ((TransmitErrors & (TransmitErrors - 1)) == 0)
                {
                    _log.TransmitFailed(_name, Errno.Describe(errno), TransmitErrors);
                }

                break;
            }
        }
    }

    public bool WaitForFrames(TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _waker.Wait(_fd, LinuxNative.POLLIN, timeout);
    }

    public void Interrupt() => _waker?.Interrupt();

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_fd >= 0)
        {
            // A persistent device outlives the stack: leave it to the kernel's own queue choice.
            DetachSteering();
            _ = LinuxNative.close(_fd);
            _fd = -1;
        }

        _waker.Dispose();
    }

    /// <summary>
    /// Sets the device's vnet header and offloads. With offload: a 10-byte virtio_net_hdr each way, and the kernel may hand
    /// over frames with the checksum to finish (TUN_F_CSUM) and TSO super-frames (TUN_F_TSO4). Without: none of either, set
    /// explicitly, since offloads set by an earlier user stay with a persistent device and would reach this link unfinished.
    /// </summary>
    private void ConfigureOffload()
    {
        if (_offload)
        {
            var size = sizeof(VirtioNetHeader);
            if (LinuxNative.ioctl(_fd, LinuxNative.TUNSETVNETHDRSZ, &size) < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"TUNSETVNETHDRSZ on '{_name}'");
            }
        }

        // TUNSETOFFLOAD takes the flags as the argument itself, not a pointer to them.
        var offloads = _offload ? LinuxNative.TUN_F_CSUM | LinuxNative.TUN_F_TSO4 : 0u;
        if (LinuxNative.ioctl(_fd, LinuxNative.TUNSETOFFLOAD, (void*)(nuint)offloads) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"TUNSETOFFLOAD on '{_name}'");
        }
    }

    /// <summary>Applies a received frame's virtio_net_hdr (<see cref="VirtioNetHeader.ApplyReceived"/>); counts what it did.</summary>
    private bool AcceptOffloaded(in VirtioNetHeader vnet, Span<byte> frame, out bool superFrame)
    {
        if (VirtioNetHeader.ApplyReceived(vnet, frame, out superFrame, out var checksumWritten) is { } reason)
        {
            return DropBadOffload(reason);
        }

        ChecksumsCompleted += checksumWritten ? 1 : 0;
        SuperFramesReceived += superFrame ? 1 : 0;
        return true;
    }

    private bool DropBadOffload(string reason)
    {
        BadOffloadFrames++;
        if ((BadOffloadFrames & (BadOffloadFrames - 1)) == 0)
        {
            _log.ReceivedFrameDropped(_name, BadOffloadFrames, reason);
        }

        return false;
    }

    /// <summary>
    /// The MAC every queue of a multi-queue device agrees on without talking: the kernel side's, locally administered and
    /// unicast, with the last bit flipped so that it is never the kernel side's own.
    /// </summary>
    private static MacAddress DerivedMac(MacAddress kernel)
    {
        Span<byte> mac = stackalloc byte[6];
        kernel.Write(mac);
        mac[0] = (byte)((mac[0] & 0xFE) | 0x02);
        mac[5] ^= 0x01;
        return MacAddress.Read(mac);
    }

    private static MacAddress RandomMac(MacAddress avoid)
    {
        Span<byte> mac = stackalloc byte[6];
        do
        {
            RandomNumberGenerator.Fill(mac);
            mac[0] = (byte)((mac[0] & 0xFE) | 0x02); // unicast, locally administered
        }
        while (MacAddress.Read(mac) == avoid);

        return MacAddress.Read(mac);
    }
}
