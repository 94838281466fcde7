using System.Diagnostics.Metrics;
using System.Net;
using System.Net.NetworkInformation;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.MemoryPinning;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Api;

/// <summary>
/// A TCP/IPv4 stack on one link with one address: listen, accept, connect. Drive it either with
/// <see cref="Start"/> (its own engine threads, real time) or with a <see cref="VirtualTimeDriver"/>.
/// A stack runs one shard, or several (one per core): each a <see cref="NetworkStack"/> with its own link queue, ARP
/// cache, TCP layer, timers, pools and connections on its own engine thread, owning the flows that
/// <see cref="FlowHash"/> maps to it. Nothing is shared on the packet path: a frame that arrives on the wrong shard is
/// handed over through a queue per pair of shards (<see cref="ShardRouter"/>).
/// </summary>
public sealed class VsoStack : IDisposable
{
    /// <summary>Frames each ordered pair of shards can have in flight; more are dropped and counted.</summary>
    private const int HandoverCapacity = 256;

    private readonly Meter _meter;
    private readonly ILink[] _ownedLinks;
    private EngineThread[]? _threads;
    private int _nextShard = -1;
    private bool _disposed;

    /// <summary>
    /// A stack on the link <paramref name="link"/> describes, which the stack opens now and closes when disposed.
    /// With <paramref name="virtualTime"/> the stack runs on that driver's clock and is stepped by it (do not call
    /// <see cref="Start"/>); without, it runs in real time once started. A link that cannot be opened throws an
    /// <see cref="IOException"/> whose message says what to grant or to fix.
    /// </summary>
    public VsoStack(VsoLinkOptions link, VsoStackOptions options, VirtualTimeDriver? virtualTime = null, ILoggerFactory? loggerFactory = null)
        : this(PlanShards(link, options, virtualTime, loggerFactory, out var shards), shards, options, virtualTime?.Clock, loggerFactory, ownsLinks: true)
    {
        virtualTime?.Add(this);
    }

    internal VsoStack(ILink link, VsoStackOptions options, IClock? clock = null, ILoggerFactory? loggerFactory = null)
        : this(OneLink(link), 1, options, clock, loggerFactory, ownsLinks: false)
    {
    }

    /// <summary>
    /// A stack of <paramref name="shardCount"/> shards; <paramref name="linkFactory"/> opens shard i's link (its queue of
    /// a multi-queue device, its member of a fanout group), called for i = 0, 1, ... in order. The stack owns the links
    /// and disposes them.
    /// </summary>
    internal VsoStack(Func<int, int, ILink> linkFactory, int shardCount, VsoStackOptions options, IClock? clock = null, ILoggerFactory? loggerFactory = null)
        : this(linkFactory, shardCount, options, clock, loggerFactory, ownsLinks: true)
    {
    }

    private VsoStack(Func<int, int, ILink> linkFactory, int shardCount, VsoStackOptions options, IClock? clock, ILoggerFactory? loggerFactory, bool ownsLinks)
    {
        ArgumentNullException.ThrowIfNull(linkFactory);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        options.Validate();
        Options = options;
        PinAccounting = new PinAccounting(options.Mlock);
        _meter = new Meter("Vso.Transport");
        var log = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Vso.Transport");
        var links = new ILink[shardCount];
        Shards = new NetworkStack[shardCount];
        var opened = 0;
        try
        {
            for (; opened < shardCount; opened++)
            {
                links[opened] = linkFactory(opened, shardCount) ?? throw new InvalidOperationException($"The link factory returned no link for shard {opened}.");
            }
        }
        catch
        {
            for (var i = 0; i < opened && ownsLinks; i++)
            {
                links[i].Dispose();
            }

            _meter.Dispose();
            throw;
        }

        _ownedLinks = ownsLinks ? links : [];
        var settings = ShardSettings(options.Tcp, shardCount);
        for (var i = 0; i < shardCount; i++)
        {
            Shards[i] = new NetworkStack(links[i], options.Ipv4, options.PrefixLength, options.GatewayIpv4, settings, clock ?? SystemClock.Instance, _meter, log, i, shardCount);
        }

        if (shardCount > 1)
        {
            JoinShards(links);
        }

        log.StackStarted(options.Ipv4.ToString(), options.PrefixLength, links[0].HardwareAddress.ToString(), links[0].Mtu);
    }

    private static Func<int, int, ILink> OneLink(ILink link)
    {
        ArgumentNullException.ThrowIfNull(link);
        return (_, _) => link;
    }

    /// <summary>The memory limit is the stack's: each shard gets its share (at least the minimum a limit may be).</summary>
    private static TcpSettings ShardSettings(TcpSettings settings, int shardCount)
    {
        if (shardCount == 1 || settings.MemoryLimit == 0)
        {
            return settings;
        }

        var shard = settings.Clone();
        shard.MemoryLimit = Math.Max(settings.MemoryLimit / shardCount, 4L * ReceiveBlockPool.BlockSize);
        return shard;
    }

    /// <summary>One hand-over queue per ordered pair of shards: queues[from][to].</summary>
    private void JoinShards(ILink[] links)
    {
        var n = Shards.Length;
        var queues = new ShardHandoverQueue?[n][];
        for (var from = 0; from < n; from++)
        {
            queues[from] = new ShardHandoverQueue?[n];
            for (var to = 0; to < n; to++)
            {
                if (from != to)
                {
                    queues[from][to] = new ShardHandoverQueue(HandoverCapacity, links[to].Mtu + EthernetFrame.HeaderLength + 4);
                }
            }
        }

        for (var i = 0; i < n; i++)
        {
            var inbound = new ShardHandoverQueue[n - 1];
            for (int from = 0, k = 0; from < n; from++)
            {
                if (from != i)
                {
                    inbound[k++] = queues[from][i]!;
                }
            }

            Shards[i].JoinShards(Shards, queues[i], inbound, _meter);
        }
    }

    private static int s_fanoutGroups;

    /// <summary>
    /// <see cref="VsoStackOptions.Engines"/>, checked against the link, and the factory that opens each shard's link:
    /// AF_PACKET opens one socket per engine, all in one PACKET_FANOUT group (its id per process and per stack, as group
    /// ids are per network namespace); TAP opens queue k of a multi-queue device for engine k; AF_XDP one socket per engine,
    /// engine k on receive queue Queue + k.
    /// </summary>
    private static Func<int, int, ILink> PlanShards(VsoLinkOptions link, VsoStackOptions options, VirtualTimeDriver? virtualTime, ILoggerFactory? loggerFactory, out int shardCount)
    {
        ArgumentNullException.ThrowIfNull(link);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        shardCount = options.Engines;
        var log = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Vso.Transport.Links");
        IClock clock = virtualTime is null ? SystemClock.Instance : virtualTime.Clock;
        if (shardCount > 1 && link is TapLinkOptions && virtualTime is null)
        {
            // A multi-queue TAP device: shard k reads queue k, and the device's steering program (TapSteeringProgram,
            // attached by queue 0) puts each flow the kernel sends on the queue of the shard FlowHash names.
            var tapContext = new LinkOpenContext(options.Ipv4, options.PrefixLength, options.GatewayIpv4, clock, log);
            return (shard, shards) => link.Open(tapContext with { Queue = shard, QueueCount = shards });
        }

        if (shardCount > 1 && link is AfXdpLinkOptions xdp && virtualTime is null)
        {
            // One AF_XDP socket per engine, each on its own receive queues (AfXdpLinkOptions.OpenLink), under one XDP program.
            if (xdp.Queues != 1 && xdp.Queues % shardCount != 0)
            {
                throw new ArgumentException(
                    $"Queues = {xdp.Queues} is invalid with Engines = {shardCount}: each engine serves its own receive queues, so use 1 (one queue per engine) or a multiple of {shardCount}.",
                    nameof(link));
            }

            var xdpContext = new LinkOpenContext(options.Ipv4, options.PrefixLength, options.GatewayIpv4, clock, log);
            return (shard, shards) => link.Open(xdpContext with { Queue = shard, QueueCount = shards });
        }

        ushort fanoutGroup = 0;
        if (shardCount > 1)
        {
            if (link is not AfPacketLinkOptions || virtualTime is not null)
            {
                throw new ArgumentException(
                    $"Engines = {options.Engines} is invalid for this link: several engines need an AF_PACKET link (one socket per engine in a fanout group), " +
                    "a TAP device (one queue per engine) or an AF_XDP link (one socket per engine on its own receive queue), in real time; use 1.",
                    nameof(options));
            }

            fanoutGroup = (ushort)(1 + ((Environment.ProcessId * 251 + Interlocked.Increment(ref s_fanoutGroups)) % 65535));
        }

        var context = new LinkOpenContext(options.Ipv4, options.PrefixLength, options.GatewayIpv4, clock, log, fanoutGroup);
        return (_, _) => link.Open(context);
    }

    public VsoStackOptions Options { get; }

    public IPAddress Address => Options.Address;

    internal Ipv4Address Ipv4 => Options.Ipv4;

    /// <summary>The stack's hardware address on its link.</summary>
    public PhysicalAddress HardwareAddress => Core.Link.HardwareAddress.ToPhysicalAddress();

    /// <summary>The IP MTU of the stack's link.</summary>
    public int Mtu => Core.Link.Mtu;

    /// <summary>The shards, one engine each; a stack of one has only <see cref="Core"/>.</summary>
    internal NetworkStack[] Shards { get; }

    /// <summary>Shard 0 (the only one of a single-shard stack).</summary>
    internal NetworkStack Core => Shards[0];

    /// <summary>The shard an active open goes to next: round robin.</summary>
    internal NetworkStack NextShard() =>
        Shards.Length == 1 ? Shards[0] : Shards[(int)((uint)Interlocked.Increment(ref _nextShard) % (uint)Shards.Length)];

    /// <summary>The shard of an active open: the one its flow hashes to when the local port is given, else round robin.</summary>
    private NetworkStack ShardFor(Ipv4Address remote, ushort remotePort, ushort localPort) =>
        localPort == 0 || Shards.Length == 1
            ? NextShard()
            : Shards[FlowHash.ShardOf(new ConnectionId(Ipv4, localPort, remote, remotePort), Shards.Length)];

    /// <summary>The stack's meter ("Vso.Transport"): tests listen to this stack's instruments only.</summary>
    internal Meter Meter => _meter;

    /// <summary>Frames handed from one shard to another (all shards).</summary>
    internal long ShardHandovers
    {
        get
        {
            long sum = 0;
            foreach (var shard in Shards)
            {
                sum += shard.HandedOver;
            }

            return sum;
        }
    }


    internal PinAccounting PinAccounting { get; }

    /// <summary>Application bytes held pinned until acknowledged; 0 once every send completed.</summary>
    public long PinnedBytes => PinAccounting.PinnedBytes;

    /// <summary>Page-rounded bytes of application memory this stack holds mlocked (<see cref="VsoStackOptions.Mlock"/>); 0 once every send completed.</summary>
    public long LockedBytes => PinAccounting.LockedBytes;

    /// <summary>Bytes leased to the link for frames being sent; 0 between turns of the loop.</summary>
    public long LeasedBytes => PinAccounting.LeasedBytes;

    /// <summary>
    /// This stack's pinning counters (the same numbers as <see cref="PinnedBytes"/>, <see cref="LockedBytes"/> and
    /// <see cref="LeasedBytes"/>); they also add up into <see cref="PinningMetrics.Global"/> and the "Vso.MemoryPinning" meter.
    /// </summary>
    internal PinningMetrics PinningMetrics => PinAccounting.Metrics;

    /// <summary>Frames dropped as malformed, per layer and reason.</summary>
    internal WireCounters WireCounters => Core.Interface.Counters;

    /// <summary>Connections in the table, TIME-WAIT included.</summary>
    public int ConnectionCount
    {
        get
        {
            var sum = 0;
            foreach (var shard in Shards)
            {
                sum += shard.Tcp.ConnectionCount;
            }

            return sum;
        }
    }

    /// <summary>Exceptions that escaped frame processing and were contained; a healthy stack keeps it at 0.</summary>
    public long ContainedExceptions
    {
        get
        {
            long sum = 0;
            foreach (var shard in Shards)
            {
                sum += shard.ContainedExceptions;
            }

            return sum;
        }
    }

    /// <summary>
    /// Starts the stack's engine thread (real time). A stack on a <see cref="VirtualTimeDriver"/> is stepped by the
    /// driver instead, and this does nothing, so code that starts a stack it was given runs unchanged in virtual time.
    /// </summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_threads is not null || DrivenVirtually)
        {
            return;
        }

        var threads = new EngineThread[Shards.Length];
        for (var i = 0; i < threads.Length; i++)
        {
            // Linux keeps 15 characters of a thread's name (comm): the shard index first, so top and /proc tell engines apart.
            threads[i] = new EngineThread(Shards[i], $"vso-engine{i} {Ipv4}", Options.BusyPollMicroseconds, Options.TurnOnCallingThread);
        }

        _threads = threads;
        foreach (var thread in threads)
        {
            thread.Start();
        }
    }

    /// <summary>For a virtual-time driver: announce the address (gratuitous ARP).</summary>
    internal void StartVirtual()
    {
        foreach (var shard in Shards)
        {
            shard.Start();
        }
    }

    /// <summary>Set by the <see cref="VirtualTimeDriver"/> that steps this stack.</summary>
    internal bool DrivenVirtually { get; set; }

    /// <summary>
    /// Accepts connections to <paramref name="port"/> on the stack's address; 0 binds a free port of the ephemeral range,
    /// which <see cref="VsoListener.Port"/> reports. Throws <see cref="InvalidOperationException"/> if the port is bound.
    /// </summary>
    public VsoListener Listen(ushort port, int? backlog = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new VsoListener(this, port, backlog ?? Options.ListenBacklog);
    }

    /// <summary>
    /// For an embedding that drives connections itself (a server transport): hands each connection to
    /// <paramref name="port"/> to <paramref name="onAccepted"/> on the engine thread, once established. The callback
    /// attaches to the endpoint and returns true, or returns false to reset the connection. Throws
    /// <see cref="InvalidOperationException"/> if the port is already bound.
    /// </summary>
    public VsoEndpointListener ListenEndpoints(ushort port, int? backlog, Func<VsoConnectionEndpoint, bool> onAccepted)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(onAccepted);
        var listener = new VsoEndpointListener(this, onAccepted);
        listener.Bind(port, backlog ?? Options.ListenBacklog);
        return listener;
    }

    /// <summary>An endpoint not yet open: attach to it, then call <see cref="VsoConnectionEndpoint.Connect"/> in a turn.</summary>
    public VsoConnectionEndpoint CreateEndpoint()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new VsoConnectionEndpoint(this, NextShard(), null);
    }

    /// <summary>An endpoint on <paramref name="shard"/> (null: the next, round robin).</summary>
    internal VsoConnectionEndpoint CreateEndpoint(NetworkStack? shard)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new VsoConnectionEndpoint(this, shard ?? NextShard(), null);
    }

    /// <summary>Opens a connection; completes when the handshake does, or fails (refused, timed out).</summary>
    public Task<VsoConnection> ConnectAsync(IPAddress remote, ushort port)
    {
        ArgumentNullException.ThrowIfNull(remote);
        return ConnectAsync(Ipv4Address.FromIPAddress(remote), port);
    }

    internal Task<VsoConnection> ConnectAsync(Ipv4Address remote, ushort port)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var connection = new VsoConnection(this, null, null, ShardFor(remote, port, 0));
        connection.PostConnect(remote, port, 0, CancellationToken.None);
        return connection.Connected;
    }

    /// <summary>
    /// Opens a connection to <paramref name="remote"/>. <paramref name="localEndPoint"/> binds before connecting: its
    /// address must be the stack's (or Any), its port is used as given (0: ephemeral); a port a listener or another
    /// connection uses fails the task with <see cref="InvalidOperationException"/>. <paramref name="settings"/>, when
    /// given, are the connection's own (copied now; the stack-wide keys in it are ignored), so that what must be known
    /// before the SYN (<see cref="TcpSettings.MssClamp"/>, <see cref="TcpSettings.ReceiveBufferSize"/> and with it the
    /// window scale) can be set. Cancelling <paramref name="cancellationToken"/> before the handshake completes closes the
    /// connection (RFC 9293 §3.10.5: silently in SYN-SENT, where a late SYN-ACK then meets RST) and cancels the task.
    /// </summary>
    public Task<VsoConnection> ConnectAsync(IPEndPoint remote, IPEndPoint? localEndPoint, TcpSettings? settings, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(remote);
        ushort localPort = 0;
        if (localEndPoint is not null)
        {
            var local = Ipv4Address.FromIPAddress(localEndPoint.Address);
            if (local != Ipv4Address.Any && local != Ipv4)
            {
                throw new ArgumentException($"Local address {localEndPoint.Address} is not the stack's ({Address}): bind to it or to Any.", nameof(localEndPoint));
            }

            localPort = (ushort)localEndPoint.Port;
        }

        settings?.Validate();
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<VsoConnection>(cancellationToken);
        }

        var remoteAddress = Ipv4Address.FromIPAddress(remote.Address);
        var connection = new VsoConnection(this, null, settings, ShardFor(remoteAddress, (ushort)remote.Port, localPort));
        connection.PostConnect(remoteAddress, (ushort)remote.Port, localPort, cancellationToken);
        return connection.Connected;
    }

    public Task<VsoConnection> ConnectAsync(IPEndPoint remote)
    {
        ArgumentNullException.ThrowIfNull(remote);
        return ConnectAsync(Ipv4Address.FromIPAddress(remote.Address), (ushort)remote.Port);
    }

    internal TaskCompletionSource<T> NewCompletion<T>() =>
        new(Options.InlineContinuations ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously);

    internal TaskCompletionSource NewCompletion() =>
        new(Options.InlineContinuations ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Stops the engine: every connection fails with <see cref="TcpError.StackStopped"/>.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_threads is not null)
        {
            foreach (var thread in _threads)
            {
                thread.Stop();
            }
        }

        foreach (var shard in Shards)
        {
            shard.Dispose();
        }

        if (_threads is not null)
        {
            foreach (var thread in _threads)
            {
                thread.Dispose();
            }
        }

        foreach (var link in _ownedLinks)
        {
            link.Dispose();
        }

        _meter.Dispose();
    }
}
