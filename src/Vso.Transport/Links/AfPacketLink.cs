using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.Transport.Native;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// An AF_PACKET SOCK_RAW socket bound to one interface. Receives through a PACKET_MMAP ring (<see cref="PacketRing"/>:
/// no copy, no system call per frame), TPACKET_V2 by default (each frame handed over at once) or TPACKET_V3 (whole
/// blocks, see <see cref="AfPacketLinkOptions.ReceiveRing"/>); transmits a batch with one sendmmsg(2), each frame a
/// scatter-gather message: its headers from the batch's own buffer and its payload straight from the host's
/// pinned memory (Pinned identify mode), or the whole frame linear (Copy mode).
/// The socket stays bound to the network namespace it was created in, whatever thread uses it later.
/// With segmentation offload (PACKET_VNET_HDR) every received frame comes with a virtio_net_hdr too, so the device's
/// offloads may stay on, as on any NIC: super-frames (GSO from a local peer, GRO) are taken whole and unfinished
/// checksums finished (<see cref="VirtioNetHeader.ApplyReceived"/>); a super-frame larger than a TPACKET_V2 slot reaches
/// the socket's queue whole (PACKET_COPY_THRESH) and is read from there. Without it, such frames are dropped, counted
/// and logged with the ethtool command that turns the offloads off.
/// </summary>
internal sealed unsafe class AfPacketLink : ILink, ILinkCounters
{
    private const int MaxIov = TransmitBatch.MaxGather + 2;

    /// <summary>Largest IPv4 packet: 65,535 bytes, less the IPv4 header and the largest TCP header.</summary>
    private const int MaxGsoPayload = 65_535 - 20 - 60;

    /// <summary>A received super-frame read from the socket's queue: its virtio_net_hdr, then up to a whole IPv4 packet.</summary>
    private const int CopiedFrameCapacity = 16 + EthernetFrame.HeaderLength + 65_535;

    /// <summary>SO_RCVBUF: room in the socket's queue for the super-frames too large for a ring slot.</summary>
    private const int CopiedFrameQueueBytes = 4 << 20;

    private readonly ILogger _log;
    private readonly string _name;
    private readonly LinkWaker _waker;
    private int _fd;
    private PacketRing? _ring;
    private MMsgHdr* _messages;
    private IoVec* _iov;
    private VirtioNetHeader* _vnet;
    private readonly bool _offload;
    private byte* _copiedFrame;
    private int _messageCapacity;
    private bool _disposed;

    public AfPacketLink(AfPacketLinkOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _log = logger ?? NullLogger.Instance;
        _name = options.InterfaceName;

        _fd = LinuxNative.socket(LinuxNative.AF_PACKET, LinuxNative.SOCK_RAW | LinuxNative.SOCK_CLOEXEC, BinaryPrimitives.ReverseEndianness(LinuxNative.ETH_P_ALL));
        if (_fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno is Errno.EPERM or Errno.EACCES
                ? new LinkException(
                    $"Opening an AF_PACKET socket for interface '{_name}' was refused ({Errno.Describe(errno)}): it needs CAP_NET_RAW. {LinkException.GrantHint}",
                    errno)
                : LinkException.FromErrno(errno, $"socket(AF_PACKET) for interface '{_name}'", "CAP_NET_RAW");
        }

        try
        {
            var index = NetDevice.IndexOf(_name);
            NetDevice.EnsureUp(_fd, _name);
            Mtu = NetDevice.GetMtu(_fd, _name);
            HardwareAddress = NetDevice.GetHardwareAddress(_fd, _name);

            SetOption(LinuxNative.SOL_PACKET, LinuxNative.PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
            if (options.SegmentationOffload)
            {
                // Before the ring: the kernel refuses PACKET_VNET_HDR once a ring exists (EBUSY). Every frame sent from now
                // on starts with a virtio_net_hdr; received frames get one too, before tp_mac, which the ring skips.
                SetOption(LinuxNative.SOL_PACKET, LinuxNative.PACKET_VNET_HDR, 1, "PACKET_VNET_HDR");
                _offload = true;
            }

            if (options.QdiscBypass)
            {
                SetOption(LinuxNative.SOL_PACKET, LinuxNative.PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS");
            }

            if (options.FilterAddress is { } filterAddress)
            {
                AttachFilter(PacketFilter.Build(filterAddress, options.FilterOnLinkPrefixLength));
            }

            var sendBuffer = options.SendBufferSize;
            if (LinuxNative.setsockopt(_fd, LinuxNative.SOL_SOCKET, LinuxNative.SO_SNDBUFFORCE, &sendBuffer, 4) < 0)
            {
                _ = LinuxNative.setsockopt(_fd, LinuxNative.SOL_SOCKET, LinuxNative.SO_SNDBUF, &sendBuffer, 4);
            }

            _ring = PacketRing.Open(_fd, options, Mtu, _name);
            if (_offload && options.ReceiveRing == AfPacketReceiveRing.V2)
            {
                // packet(7): a frame too large for its slot is still queued whole on the socket, its slot marked
                // TP_STATUS_COPY, while the queue holds less than SO_RCVBUF.
                SetOption(LinuxNative.SOL_PACKET, LinuxNative.PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH");
                var queueBytes = CopiedFrameQueueBytes;
                if (LinuxNative.setsockopt(_fd, LinuxNative.SOL_SOCKET, LinuxNative.SO_RCVBUFFORCE, &queueBytes, 4) < 0)
                {
                    _ = LinuxNative.setsockopt(_fd, LinuxNative.SOL_SOCKET, LinuxNative.SO_RCVBUF, &queueBytes, 4);
                }

                _copiedFrame = (byte*)NativeMemory.Alloc(CopiedFrameCapacity);
            }

            var address = new SockAddrLl
            {
                Family = LinuxNative.AF_PACKET,
                Protocol = BinaryPrimitives.ReverseEndianness(LinuxNative.ETH_P_ALL),
                IfIndex = index,
            };
            if (LinuxNative.bind(_fd, &address, (uint)sizeof(SockAddrLl)) < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"bind to interface '{_name}'", "CAP_NET_RAW");
            }

            if (options.FanoutGroup != 0)
            {
                JoinFanout(options.FanoutGroup);
            }

            _waker = new LinkWaker();
        }
        catch
        {
            Release();
            throw;
        }

        _log.LinkOpened("AF_PACKET", _name, HardwareAddress.ToString(), Mtu,
            $"{_ring.Description}, qdisc bypass {options.QdiscBypass}, segmentation offload {_offload}, fanout group {options.FanoutGroup}");
    }

    /// <summary>Up to 64 KiB of TCP payload per super-segment with <see cref="AfPacketLinkOptions.SegmentationOffload"/>, else 0.</summary>
    public int MaxOffloadPayload => _offload ? MaxGsoPayload : 0;

    public MacAddress HardwareAddress { get; }

    public int Mtu { get; }

    public long NextEventMicroseconds => long.MaxValue;

    public bool CanBlock => true;

    public string InterfaceName => _name;

    /// <summary>Frames handed to the stack.</summary>
    public long FramesReceived { get; private set; }

    /// <summary>Without segmentation offload: frames the kernel handed over with unfinished checksums (offloads on), dropped.</summary>
    public long ChecksumNotReadyFrames { get; private set; }

    /// <summary>Received frames larger than the MTU allows and not a TCPv4 super-frame (or cut short), dropped.</summary>
    public long OversizeReceivedFrames { get; private set; }

    /// <summary>With segmentation offload: TCPv4 super-frames received (GSO from a local peer, GRO), taken whole.</summary>
    public long SuperFramesReceived { get; private set; }

    /// <summary>With segmentation offload: received frames whose TCP checksum the link finished or wrote anew.</summary>
    public long ChecksumsCompleted { get; private set; }

    /// <summary>With segmentation offload: super-frames too large for a ring slot, read from the socket's queue.</summary>
    public long CopiedFrames { get; private set; }

    /// <summary>With segmentation offload: frames whose virtio_net_hdr asked for what the link cannot do, dropped.</summary>
    public long BadOffloadFrames { get; private set; }

    long ILinkCounters.BadOffloadFrames => BadOffloadFrames + ChecksumNotReadyFrames;

    /// <summary>Frames the stack asked to send that were larger than the MTU allows, not sent.</summary>
    public long OversizeTransmitFrames { get; private set; }

    public long FramesTransmitted { get; private set; }

    /// <summary>Frames the kernel refused to send (ENOBUFS, interface down, …), dropped: TCP retransmits them.</summary>
    public long TransmitErrors { get; private set; }

    /// <summary>Times the kernel marked the ring as losing frames (the ring was full).</summary>
    public long RingLosingEvents { get; private set; }

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var handed = 0;
        while (handed < maxFrames && _ring!.TryPeek(out var frame))
        {
            try
            {
                if (Accept(frame, out var data))
                {
                    handed++;
                    FramesReceived++;
                    receiver.OnFrame(data);
                }
            }
            finally
            {
                // The frame is read in place: give its memory back only once the stack is done with it, and even
                // if the stack threw, so that a bad frame is not delivered again.
                _ring.Release();
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

        EnsureMessages(batch.Count);
        var maxFrame = Mtu + EthernetFrame.HeaderLength;
        var count = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            var length = batch.FrameLength(i);
            if (length > maxFrame && (batch.GsoSize(i) == 0 || length > MaxGsoPayload + 60 + 20 + EthernetFrame.HeaderLength))
            {
                OversizeTransmitFrames++;
                _log.OversizeTransmit(_name, length, Mtu, OversizeTransmitFrames);
                continue;
            }

            var iov = _iov + (count * MaxIov);
            var linear = batch.Linear(i);
            var n = 0;
            if (_offload)
            {
                // virtio_net_hdr (little-endian on this host): none for an ordinary frame, whose checksums are complete;
                // TCPv4 GSO for a super-segment, whose TCP checksum field holds the pseudo-header sum (NEEDS_CSUM).
                var vnet = _vnet + count;
                var gso = batch.GsoSize(i);
                *vnet = gso == 0
                    ? default
                    : VirtioNetHeader.TcpV4(linear.Length, gso);
                iov[n++] = new IoVec { Base = vnet, Length = (nuint)sizeof(VirtioNetHeader) };
            }

            iov[n++] = new IoVec { Base = (void*)batch.LinearAddress(i), Length = (nuint)linear.Length };
            foreach (var g in batch.Gathers(i))
            {
                iov[n++] = new IoVec { Base = (void*)g.Address, Length = (nuint)g.Length };
            }

            _messages[count] = new MMsgHdr { Header = new MsgHdr { Iov = iov, IovLength = (nuint)n } };
            count++;
        }

        var offset = 0;
        var retries = 0;
        while (offset < count)
        {
            var sent = LinuxNative.sendmmsg(_fd, _messages + offset, (uint)(count - offset), 0);
            if (sent > 0)
            {
                offset += sent;
                FramesTransmitted += sent;
                continue;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno == Errno.EINTR)
            {
                continue;
            }

            if (errno == Errno.EAGAIN && retries++ < 100)
            {
                _ = _waker.Wait(_fd, LinuxNative.POLLOUT, TimeSpan.FromMilliseconds(1));
                continue;
            }

            // ENOBUFS (a full device queue), ENETDOWN, …: this frame is lost; TCP will send it again.
            TransmitErrors++;
            if (IsPowerOfTwo(TransmitErrors))
            {
                _log.TransmitFailed(_name, Errno.Describe(errno), TransmitErrors);
            }

            offset++;
        }
    }

    public bool WaitForFrames(TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_ring!.HasFrame)
        {
            return true;
        }

        _ = _waker.Wait(_fd, LinuxNative.POLLIN, timeout);
        return _ring.HasFrame;
    }

    public void Interrupt() => _waker?.Interrupt();

    /// <summary>The kernel's count of frames received and dropped because the ring was full (PACKET_STATISTICS; reading it resets it).</summary>
    public (long Packets, long Drops) ReadKernelStatistics()
    {
        var stats = default(TPacketStatsV3);
        var length = (uint)sizeof(TPacketStatsV3);
        return LinuxNative.getsockopt(_fd, LinuxNative.SOL_PACKET, LinuxNative.PACKET_STATISTICS, &stats, &length) < 0
            ? (0, 0)
            : (stats.Packets, stats.Drops);
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

    private void Release()
    {
        _ring?.Dispose();
        _ring = null;

        if (_fd >= 0)
        {
            _ = LinuxNative.close(_fd);
            _fd = -1;
        }

        if (_messages != null)
        {
            NativeMemory.Free(_messages);
            NativeMemory.Free(_iov);
            NativeMemory.Free(_vnet);
            _messages = null;
            _iov = null;
            _vnet = null;
        }

        NativeMemory.Free(_copiedFrame);
        _copiedFrame = null;
    }

    private void EnsureMessages(int count)
    {
        if (count <= _messageCapacity)
        {
            return;
        }

        if (_messages != null)
        {
            NativeMemory.Free(_messages);
            NativeMemory.Free(_iov);
            NativeMemory.Free(_vnet);
        }

        _messageCapacity = Math.Max(count, 64);
        _vnet = (VirtioNetHeader*)NativeMemory.AllocZeroed((nuint)(_messageCapacity * sizeof(VirtioNetHeader)));
        _messages = (MMsgHdr*)NativeMemory.AllocZeroed((nuint)(_messageCapacity * sizeof(MMsgHdr)));
        _iov = (IoVec*)NativeMemory.AllocZeroed((nuint)(_messageCapacity * MaxIov * sizeof(IoVec)));
    }

    /// <summary>The checks both rings share: whether <paramref name="frame"/> goes to the stack, as <paramref name="data"/>; counts and logs the ones that do not.</summary>
    private bool Accept(in RingFrame frame, out Span<byte> data)
    {
        data = default;

        // A slot marked TP_STATUS_COPY has its whole frame waiting in the socket's queue: take it off first, whatever
        // becomes of the frame, or the next such slot would read this one's.
        var copied = false;
        VirtioNetHeader copiedHeader = default;
        if (_offload && (frame.Status & LinuxNative.TP_STATUS_COPY) != 0)
        {
            copied = TryReadCopied(out copiedHeader, out data);
        }

        // Our own transmissions, as the kernel shows them to packet sockets; PACKET_IGNORE_OUTGOING should keep them out already.
        if (frame.PacketType == LinuxNative.PACKET_OUTGOING)
        {
            return false;
        }

        // The kernel found the ring full before this frame and dropped some (packet(7): TP_STATUS_LOSING).
        if ((frame.Status & LinuxNative.TP_STATUS_LOSING) != 0)
        {
            RingLosingEvents++;
        }

        if (_offload)
        {
            return AcceptOffloaded(frame, copied, copiedHeader, ref data);
        }

        if ((frame.Status & LinuxNative.TP_STATUS_CSUMNOTREADY) != 0)
        {
            ChecksumNotReadyFrames++;
            if (IsPowerOfTwo(ChecksumNotReadyFrames))
            {
                _log.ChecksumNotReady(_name, ChecksumNotReadyFrames);
            }

            return false;
        }

        if (frame.Length > Mtu + EthernetFrame.HeaderLength || frame.SnapLength < frame.Length)
        {
            return DropOversize((int)frame.Length);
        }

        data = new Span<byte>(frame.Data, (int)frame.SnapLength);
        return true;
    }

    /// <summary>
    /// A frame with its virtio_net_hdr, which tpacket_rcv writes just before the frame in the slot (or, for a frame
    /// the slot could not hold, recv(2) returned in front of it: <paramref name="copied"/>, already in <paramref name="data"/>).
    /// </summary>
    private bool AcceptOffloaded(in RingFrame frame, bool copied, in VirtioNetHeader copiedHeader, ref Span<byte> data)
    {
        var header = copiedHeader;
        if (copied)
        {
            CopiedFrames++;
        }
        else if (frame.SnapLength < frame.Length)
        {
            return DropOversize((int)frame.Length);
        }
        else
        {
            header = *(VirtioNetHeader*)(frame.Data - sizeof(VirtioNetHeader));
            data = new Span<byte>(frame.Data, (int)frame.SnapLength);
        }

        if (VirtioNetHeader.ApplyReceived(header, data, out var superFrame, out var checksumWritten) is { } reason)
        {
            BadOffloadFrames++;
            if (IsPowerOfTwo(BadOffloadFrames))
            {
                _log.ReceivedFrameDropped(_name, BadOffloadFrames, reason);
            }

            return false;
        }

        if (!superFrame && data.Length > Mtu + EthernetFrame.HeaderLength)
        {
            return DropOversize(data.Length);
        }

        ChecksumsCompleted += checksumWritten ? 1 : 0;
        SuperFramesReceived += superFrame ? 1 : 0;
        return true;
    }

    /// <summary>The whole frame whose slot says TP_STATUS_COPY: the next one in the socket's queue, header first.</summary>
    private bool TryReadCopied(out VirtioNetHeader header, out Span<byte> data)
    {
        header = default;
        data = default;
        nint n;
        do
        {
            n = LinuxNative.recvfrom(_fd, _copiedFrame, CopiedFrameCapacity, LinuxNative.MSG_DONTWAIT, null, null);
        }
        while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);

        if (n <= sizeof(VirtioNetHeader))
        {
            return false;
        }

        header = *(VirtioNetHeader*)_copiedFrame;
        data = new Span<byte>(_copiedFrame + sizeof(VirtioNetHeader), (int)n - sizeof(VirtioNetHeader));
        return true;
    }

    private bool DropOversize(int length)
    {
        OversizeReceivedFrames++;
        if (IsPowerOfTwo(OversizeReceivedFrames))
        {
            _log.OversizeReceived(_name, OversizeReceivedFrames, length, Mtu);
        }

        return false;
    }

    private void SetOption(int level, int name, int value, string what)
    {
        if (LinuxNative.setsockopt(_fd, level, name, &value, 4) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"setsockopt {what} on '{_name}'", "CAP_NET_RAW");
        }
    }

    /// <summary>
    /// Joins the PACKET_FANOUT_CBPF group <paramref name="group"/> (after bind: the kernel takes the socket's device and
    /// protocol for the group's) and sets its program; each member sets the same one. Outgoing frames are kept from the
    /// group as PACKET_IGNORE_OUTGOING keeps them from a lone socket (the group has its own hook, so the socket option no
    /// longer applies); a kernel without that flag refuses it and the socket joins without.
    /// </summary>
    private void JoinFanout(ushort group)
    {
        var withFlag = group | ((LinuxNative.PACKET_FANOUT_CBPF | LinuxNative.PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16);
        if (LinuxNative.setsockopt(_fd, LinuxNative.SOL_PACKET, LinuxNative.PACKET_FANOUT, &withFlag, 4) < 0)
        {
            SetOption(LinuxNative.SOL_PACKET, LinuxNative.PACKET_FANOUT, group | (LinuxNative.PACKET_FANOUT_CBPF << 16), "PACKET_FANOUT");
        }

        var program = FanoutProgram.Build();
        fixed (PacketFilter.SockFilter* filter = program)
        {
            var fprog = new SockFprog { Length = (ushort)program.Length, Filter = filter };
            if (LinuxNative.setsockopt(_fd, LinuxNative.SOL_PACKET, LinuxNative.PACKET_FANOUT_DATA, &fprog, (uint)sizeof(SockFprog)) < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"setsockopt PACKET_FANOUT_DATA on '{_name}'", "CAP_NET_RAW");
            }
        }
    }

    private void AttachFilter(PacketFilter.SockFilter[] program)
    {
        fixed (PacketFilter.SockFilter* filter = program)
        {
            var fprog = new SockFprog { Length = (ushort)program.Length, Filter = filter };
            if (LinuxNative.setsockopt(_fd, LinuxNative.SOL_SOCKET, LinuxNative.SO_ATTACH_FILTER, &fprog, (uint)sizeof(SockFprog)) < 0)
            {
                throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"setsockopt SO_ATTACH_FILTER on '{_name}'", "CAP_NET_RAW");
            }
        }
    }

    /// <summary>struct sock_fprog (linux/filter.h).</summary>
    private struct SockFprog
    {
        public ushort Length;
        public PacketFilter.SockFilter* Filter;
    }

    private static bool IsPowerOfTwo(long n) => (n & (n - 1)) == 0;
}
