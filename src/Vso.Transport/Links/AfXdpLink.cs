using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.Transport.Native;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// AF_XDP sockets (Documentation/networking/af_xdp.rst), one per receive queue served (<see cref="XskSocket"/>), with the
/// stack's own XDP program (<see cref="XdpRedirectProgram"/>) steering to them only ARP for the stack's address and IPv4
/// addressed to the stack; everything else stays the kernel's. Received frames are read in place from the RX rings and
/// their UMEM frames go straight back to the fill rings. A transmitted frame leaves in place when its payload lies in the
/// pinned block pool the UMEM covers (<see cref="AfXdpLinkOptions.UmemPool"/>): the headers in one of the link's frames,
/// the payload as further descriptors of the same packet naming the application's bytes (XDP_USE_SG), its pin leases
/// held until the completion ring returns them; otherwise it is copied once into a UMEM frame. With XDP_USE_NEED_WAKEUP
/// the kernel is kicked only when it asks (sendto for TX, recvfrom for the fill ring); in copy mode every TX batch takes
/// a sendto, in which the kernel sends it. The engine sleeps in ppoll on the sockets (POLLIN: an RX ring has frames),
/// waking while TX descriptors are outstanding to reap their completions, which no poll event announces; the rings are
/// touched only in the turn (Receive, Transmit), never in the wait, which another thread's turn may overlap.
/// Frames go out through the first queue's socket; a stack of several engines opens one link per engine (<see cref="OpenShard"/>).
/// </summary>
internal sealed unsafe class AfXdpLink : ILink, ILinkCounters
{
    /// <summary>XDP_PACKET_HEADROOM: what the kernel keeps in front of a received frame in its UMEM frame.</summary>
    private const int KernelHeadroom = 256;

    /// <summary>Kicks of the TX ring per Transmit before the rest is left to the next one (copy mode sends 32 frames per kick).</summary>
    internal const int MaxKicks = 256;

    internal const string GrantHint =
        "Run as root, or grant the capabilities to the program: `sudo setcap cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock+ep <program>` " +
        "(for `dotnet app.dll` that is the dotnet host; an apphost or a single-file publish is better), " +
        "or in a container add `--cap-add NET_RAW --cap-add NET_ADMIN --cap-add BPF --cap-add IPC_LOCK`.";

    private readonly ILogger _log;
    private readonly string _name;
    private readonly LinkWaker _waker;
    private readonly XskSocket[] _sockets;
    private readonly int[] _fds;
    private readonly int _ifIndex;
    private XdpRedirectProgram? _program;
    private int _nextReceive;
    private int _reapWaits;

    /// <summary>Longest wait between two looks at the completion ring while descriptors are outstanding, as a power of two of milliseconds (64 ms).</summary>
    private const int MaxReapBackoff = 6;
    private bool _disposed;

    /// <summary>Opens one socket on each of the configured queues (<see cref="AfXdpLinkOptions.Queue"/> and the <see cref="AfXdpLinkOptions.Queues"/> - 1 after it).</summary>
    public AfXdpLink(AfXdpLinkOptions options, ILogger? logger = null)
        : this(options, first: 0, count: options?.Queues ?? 1, shards: 1, logger)
    {
    }

    private AfXdpLink(AfXdpLinkOptions options, int first, int count, int shards, ILogger? logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _log = logger ?? NullLogger.Instance;
        _name = options.InterfaceName;
        Queue = options.Queue + first;
        _sockets = new XskSocket[count];
        _fds = new int[count];
        try
        {
            _ifIndex = NetDevice.IndexOf(_name);
            // Every queue of the configured ones, not only this link's: a stack of engines fails whole, on its first link.
            var queues = QueryDevice(options.Queue, options.Queue + options.Queues - 1, shards);
            if (KernelHeadroom + EthernetFrame.HeaderLength + Mtu > options.FrameSize)
            {
                throw new LinkException(
                    $"Interface '{_name}' has MTU {Mtu}: a frame and the kernel's {KernelHeadroom}-byte headroom do not fit an AF_XDP frame of {options.FrameSize} bytes " +
                    $"(received multi-buffer frames are not supported). Lower the MTU to {options.FrameSize - KernelHeadroom - EthernetFrame.HeaderLength} or less (`ip link set {_name} mtu N`), or use Vso:Backend = AfPacket.");
            }

            _program = XdpAttachments.Acquire(_ifIndex, _name, options.Address, Math.Max(queues, options.Queue + options.Queues), options.Mode, _log);
            for (var i = 0; i < count; i++)
            {
                var socket = XskSocket.Open(options, _ifIndex, Queue + i, options.Mode, options.UmemPool, _log);
                _sockets[i] = socket;
                _fds[i] = socket.Fd;
                _program.SetSocket(socket.Queue, socket.Fd, _name);
            }

            ZeroCopy = _sockets[0].ZeroCopy;
            if (options.Mode == AfXdpMode.Auto && !ZeroCopy)
            {
                _log.AfXdpFallback(_name, "the driver has no zero-copy AF_XDP", "copy mode");
            }

            _waker = new LinkWaker();
        }
        catch
        {
            Release();
            throw;
        }

        var umem = _sockets[0].Umem;
        _log.LinkOpened("AF_XDP", _name, HardwareAddress.ToString(), Mtu,
            $"queue{(count == 1 ? $" {Queue}" : $"s {Queue} to {Queue + count - 1}")}, {(GenericXdp ? "generic (SKB) XDP" : "native XDP")}, {(ZeroCopy ? "zero-copy" : "copy mode")}, " +
            $"rings {options.RingSize}, UMEM {umem.Length} B {(umem.Unaligned ? "over the pinned block pool" : "private")} in frames of {options.FrameSize} B, " +
            $"{(_sockets[0].InPlaceTransmit ? "payload sent in place from the pool (multi-buffer)" : "frames copied into the UMEM")}");
    }

    /// <summary>
    /// Opens the link of queue <paramref name="index"/> of the configured ones (<see cref="AfXdpLinkOptions.Queue"/> +
    /// <paramref name="index"/>) alone: one link per shard, the shards sharing the interface's XDP program.
    /// </summary>
    internal static AfXdpLink OpenQueue(AfXdpLinkOptions options, int index, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, options.Queues);
        return new AfXdpLink(options, index, 1, shards: 1, logger);
    }

    /// <summary>
    /// Opens the link of engine <paramref name="shard"/> of <paramref name="shards"/>: its share of the configured queues
    /// (<see cref="AfXdpLinkOptions.Queues"/>, a multiple of the engines), in order, one socket and one UMEM each. Frames
    /// the device put on this engine's queues for another engine's flows are handed over by the stack's shard router.
    /// Each engine registers the pool's region as a UMEM of its own rather than binding with XDP_SHARED_UMEM: the engines
    /// stay independent (opened, closed and failing in any order, no socket naming another engine's), and the code path is
    /// the one-queue link's. The pages are the same (pinned again, not copied), and the frames are each engine's own
    /// blocks of the pool either way; the cost is the region charged to RLIMIT_MEMLOCK once per engine when the process
    /// lacks CAP_IPC_LOCK (which the grant hint asks for) and the kernel's page array per registration (8 bytes a page).
    /// </summary>
    internal static AfXdpLink OpenShard(AfXdpLinkOptions options, int shard, int shards, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(shards, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shard, shards);
        if (options.Queues % shards != 0)
        {
            throw new ArgumentException($"Queues = {options.Queues} is not a multiple of the {shards} engines.", nameof(options));
        }

        var perShard = options.Queues / shards;
        return new AfXdpLink(options, shard * perShard, perShard, shards, logger);
    }

    public MacAddress HardwareAddress { get; private set; }

    public int Mtu { get; private set; }

    public long NextEventMicroseconds => long.MaxValue;

    public bool CanBlock => true;

    public string InterfaceName => _name;

    /// <summary>The (first) receive queue a socket is bound to.</summary>
    public int Queue { get; }

    /// <summary>Receive queues served, one socket each, from <see cref="Queue"/> on.</summary>
    public int QueueCount => _sockets.Length;

    /// <summary>Whether the socket runs in zero-copy mode (the driver reads and writes the UMEM), rather than copy mode.</summary>
    public bool ZeroCopy { get; private set; }

    /// <summary>Whether the XDP program runs in generic (SKB) mode rather than in the driver.</summary>
    public bool GenericXdp => _program?.Generic ?? false;

    /// <summary>Frames handed to the stack.</summary>
    public long FramesReceived => Sum(static s => s.FramesReceived);

    /// <summary>Received frames larger than the MTU allows, dropped.</summary>
    public long OversizeReceivedFrames => Sum(static s => s.OversizeReceivedFrames);

    /// <summary>Frames the stack asked to send that were larger than the MTU allows, not sent.</summary>
    public long OversizeTransmitFrames { get; private set; }

    /// <summary>Frames put on the TX ring.</summary>
    public long FramesTransmitted => Sum(static s => s.FramesTransmitted);

    /// <summary>Frames whose payload the kernel or device read in place from the application's pinned blocks.</summary>
    public long FramesSentInPlace => Sum(static s => s.FramesSentInPlace);

    /// <summary>Frames copied whole into a UMEM frame (no payload, or payload outside the UMEM).</summary>
    public long FramesCopied => Sum(static s => s.FramesCopied);

    /// <summary>Frames dropped on the way out (no free UMEM frame, the kernel refused): TCP retransmits them.</summary>
    public long TransmitErrors => Sum(static s => s.TransmitErrors);

    /// <summary>Frames handed to the stack from receive queue <see cref="Queue"/> + <paramref name="index"/>.</summary>
    internal long FramesReceivedOnQueue(int index) => _sockets[index].FramesReceived;

    internal XskSocket Socket(int index) => _sockets[index];

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);

        // The TX side's upkeep runs here, in the turn, and not in WaitForFrames: a turn may run on an application thread
        // (under the stack's gate) while the engine thread waits, so the wait must not touch the rings or the record.
        var tx = _sockets[0];
        if (tx.TxOutstanding != 0)
        {
            // Frames a kick left on the TX ring.
            tx.Kick();
        }

        if (tx.OutstandingTransmits != 0 && tx.Reap())
        {
            _reapWaits = 0;
        }

        var maxFrame = Mtu + EthernetFrame.HeaderLength;
        if (_sockets.Length == 1)
        {
            return _sockets[0].Receive(receiver, maxFrames, maxFrame);
        }

        // Each queue in turn, starting one further every call, so that no queue waits behind a busy one.
        var handed = 0;
        var start = _nextReceive++;
        for (var i = 0; i < _sockets.Length && handed < maxFrames; i++)
        {
            handed += _sockets[(start + i) % _sockets.Length].Receive(receiver, maxFrames - handed, maxFrame);
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

        var socket = _sockets[0];
        var maxFrame = Mtu + EthernetFrame.HeaderLength;
        for (var i = 0; i < batch.Count; i++)
        {
            var length = batch.FrameLength(i);
            if (length > maxFrame || batch.GsoSize(i) != 0)
            {
                OversizeTransmitFrames++;
                _log.OversizeTransmit(_name, length, Mtu, OversizeTransmitFrames);
                continue;
            }

            socket.Enqueue(batch, i);
        }

        socket.Flush();

        // New descriptors: look for their completions from the shortest wait again.
        _reapWaits = 0;
    }

    public bool WaitForFrames(TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        foreach (var socket in _sockets)
        {
            if (socket.HasReceived)
            {
                return true;
            }
        }

        // Only reads of the TX side here (see Receive): the turn after this wait kicks what is left and reaps.
        var tx = _sockets[0];
        var wait = tx.TxOutstanding != 0 ? TimeSpan.FromMilliseconds(1) : Timeout.InfiniteTimeSpan;

        // Completions end the leases of in-place payload and free TX frames, but no poll event announces them: a device
        // completes after the send returns (a NIC at its TX interrupt, a copy-mode skb when it is freed). While descriptors
        // are outstanding, come back for them, after 1 ms and then backing off to 64 ms while none come (a device may hold
        // a frame), so that an idle link neither holds the application's blocks nor spins. Only waits with something
        // outstanding count, and a send or a completion starts them over: an idle spell must not use up the short waits
        // of the next send.
        if (tx.OutstandingTransmits != 0)
        {
            // A zero-copy driver completes in its NAPI poll, which it may need a kick to run (XDP_USE_NEED_WAKEUP).
            tx.WakeForCompletions();
            var reap = TimeSpan.FromMilliseconds(1 << _reapWaits);
            _reapWaits = Math.Min(_reapWaits + 1, MaxReapBackoff);
            if (wait == Timeout.InfiniteTimeSpan || reap < wait)
            {
                wait = reap;
            }
        }
        else
        {
            _reapWaits = 0;
        }

        if (wait != Timeout.InfiniteTimeSpan && (timeout < TimeSpan.Zero || timeout > wait))
        {
            timeout = wait;
        }

        return _waker.Wait(_fds, LinuxNative.POLLIN, timeout);
    }

    public void Interrupt() => _waker?.Interrupt();

    /// <summary>
    /// The kernel's counters of the sockets (XDP_STATISTICS), summed: frames dropped for other reasons, because an RX ring
    /// was full, and times a fill ring was found empty.
    /// </summary>
    public (long Dropped, long RxRingFull, long FillRingEmpty) ReadKernelStatistics()
    {
        long dropped = 0, full = 0, empty = 0;
        foreach (var socket in _sockets)
        {
            var (d, f, e) = socket.ReadKernelStatistics();
            dropped += d;
            full += f;
            empty += e;
        }

        return (dropped, full, empty);
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

    private long Sum(Func<XskSocket, long> counter)
    {
        long total = 0;
        foreach (var socket in _sockets)
        {
            if (socket is not null)
            {
                total += counter(socket);
            }
        }

        return total;
    }

    /// <summary>Reads the MTU, MAC and receive queue count with a throwaway AF_INET socket (AF_XDP sockets take no SIOC* ioctls).</summary>
    private int QueryDevice(int firstQueue, int lastQueue, int shards)
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
                return lastQueue + 1; // the driver does not say: the bind will tell
            }

            var queues = (int)(channels.RxCount + channels.CombinedCount);
            if (queues > 0 && lastQueue >= queues)
            {
                var fix = shards == 1
                    ? "Set Vso:AfXdp:Queue (and Vso:AfXdp:Queues) to name only those."
                    : $"Vso:Engines = {shards} gives each engine its own receive queue, {firstQueue} to {lastQueue} (from Vso:AfXdp:Queue = {firstQueue}): " +
                      $"give the interface {lastQueue + 1} queues or more (`ethtool -L {_name} combined {lastQueue + 1}`, or rx; a veth takes numrxqueues when created), " +
                      $"or set Vso:Engines to {Math.Max(1, queues - firstQueue)} or less.";
                throw new LinkException(
                    $"Receive queue {lastQueue} of '{_name}' does not exist: it has {queues} receive queue(s), 0 to {queues - 1} (`ethtool -l {_name}`). {fix}",
                    Errno.EINVAL);
            }

            return Math.Max(queues, 1);
        }
        finally
        {
            _ = LinuxNative.close(control);
        }
    }

    private void Release()
    {
        // The sockets close first (each takes itself out of the XSKMAP and stops reading its UMEM), then the program goes
        // if no other link of this interface holds it.
        foreach (var socket in _sockets)
        {
            socket?.Dispose();
        }

        if (_program is not null)
        {
            XdpAttachments.Release(_ifIndex, _program);
            _program = null;
        }
    }
}
