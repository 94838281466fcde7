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
/// </summary>
internal sealed unsafe class TapLink : ILink
{
    private const int MaxIov = TransmitBatch.MaxGather + 1;

    private readonly ILogger _log;
    private readonly string _name;
    private readonly LinkWaker _waker;
    private readonly byte[] _receiveBuffer;
    private int _fd;
    private bool _disposed;

    public TapLink(TapLinkOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _log = logger ?? NullLogger.Instance;
        _name = options.Name;

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
        try
        {
            var request = IfReq.For(_name);
            request.Flags = (short)(LinuxNative.IFF_TAP | LinuxNative.IFF_NO_PI);
            if (LinuxNative.ioctl(_fd, LinuxNative.TUNSETIFF, &request) < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw errno switch
                {
                    Errno.EPERM or Errno.EACCES => new LinkException(
                        $"Attaching to TAP device '{_name}' was refused ({Errno.Describe(errno)}): it needs CAP_NET_ADMIN " +
                        $"(or a persistent device owned by this user: `ip tuntap add dev {_name} mode tap user $USER`). {LinkException.GrantHint}",
                        errno),
                    Errno.EINVAL => new LinkException($"Interface '{_name}' exists but is not a TAP device ({Errno.Describe(errno)}).", errno),
                    Errno.EBUSY => new LinkException($"TAP device '{_name}' is already attached to another process ({Errno.Describe(errno)}).", errno),
                    _ => LinkException.FromErrno(errno, $"TUNSETIFF '{_name}'"),
                };
            }

            control = LinuxNative.socket(LinuxNative.AF_INET, LinuxNative.SOCK_DGRAM | LinuxNative.SOCK_CLOEXEC, 0);
            if (control < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), "socket(AF_INET) for interface configuration");
            }

            if (options.Mtu is { } mtu)
            {
                NetDevice.SetMtu(control, _name, mtu);
            }

            if (options.KernelIpv4 is { } kernelAddress)
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
            HardwareAddress = options.Mac ?? RandomMac(kernelMac);
            _receiveBuffer = GC.AllocateUninitializedArray<byte>(65536 + 64, pinned: true);
            _waker = new LinkWaker();
            Created = !exists;
        }
        catch
        {
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
            Created ? $"created{(options.KernelIpv4 is { } a ? $", kernel side {a}/{options.KernelPrefixLength}" : "")}" : "attached");
    }

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

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var handed = 0;
        var maxFrame = Mtu + EthernetFrame.HeaderLength;
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

                if (n == 0)
                {
                    break;
                }

                if (n > maxFrame)
                {
                    OversizeReceivedFrames++;
                    if ((OversizeReceivedFrames & (OversizeReceivedFrames - 1)) == 0)
                    {
                        _log.OversizeReceived(_name, OversizeReceivedFrames, (int)n, Mtu);
                    }

                    continue;
                }

                handed++;
                FramesReceived++;
                receiver.OnFrame(new ReadOnlySpan<byte>(buffer, (int)n));
            }
        }

        return handed;
    }

    public void Transmit(TransmitBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var iov = stackalloc IoVec[MaxIov];
        var maxFrame = Mtu + EthernetFrame.HeaderLength;
        for (var i = 0; i < batch.Count; i++)
        {
            var length = batch.FrameLength(i);
            if (length > maxFrame)
            {
                OversizeTransmitFrames++;
                _log.OversizeTransmit(_name, length, Mtu, OversizeTransmitFrames);
                continue;
            }

            iov[0] = new IoVec { Base = (void*)batch.LinearAddress(i), Length = (nuint)batch.Linear(i).Length };
            var n = 1;
            foreach (var g in batch.Gathers(i))
            {
                iov[n++] = new IoVec { Base = (void*)g.Address, Length = (nuint)g.Length };
            }

            for (var attempt = 0; ; attempt++)
            {
                if (LinuxNative.writev(_fd, iov, n) >= 0)
                {
                    FramesTransmitted++;
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
            _ = LinuxNative.close(_fd);
            _fd = -1;
        }

        _waker.Dispose();
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
