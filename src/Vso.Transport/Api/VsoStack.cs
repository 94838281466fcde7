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
/// <see cref="Start"/> (its own engine thread, real time) or with a <see cref="VirtualTimeDriver"/>.
/// </summary>
public sealed class VsoStack : IDisposable
{
    private readonly Meter _meter;
    private EngineThread? _thread;
    private readonly ILink? _ownedLink;
    private bool _disposed;

    /// <summary>
    /// A stack on the link <paramref name="link"/> describes, which the stack opens now and closes when disposed.
    /// With <paramref name="virtualTime"/> the stack runs on that driver's clock and is stepped by it (do not call
    /// <see cref="Start"/>); without, it runs in real time once started. A link that cannot be opened throws an
    /// <see cref="IOException"/> whose message says what to grant or to fix.
    /// </summary>
    public VsoStack(VsoLinkOptions link, VsoStackOptions options, VirtualTimeDriver? virtualTime = null, ILoggerFactory? loggerFactory = null)
        : this(OpenLink(link, options, virtualTime, loggerFactory), options, virtualTime?.Clock, loggerFactory)
    {
        _ownedLink = Core.Link;
        virtualTime?.Add(this);
    }

    internal VsoStack(ILink link, VsoStackOptions options, IClock? clock = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(link);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        PinAccounting = new PinAccounting(options.Mlock);
        _meter = new Meter("Vso.Transport");
        var log = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Vso.Transport");
        Core = new NetworkStack(link, options.Ipv4, options.PrefixLength, options.GatewayIpv4, options.Tcp, clock ?? SystemClock.Instance, _meter, log);
        log.StackStarted(options.Ipv4.ToString(), options.PrefixLength, link.HardwareAddress.ToString(), link.Mtu);
    }

    private static ILink OpenLink(VsoLinkOptions link, VsoStackOptions options, VirtualTimeDriver? virtualTime, ILoggerFactory? loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(link);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var log = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Vso.Transport.Links");
        IClock clock = virtualTime is null ? SystemClock.Instance : virtualTime.Clock;
        return link.Open(new LinkOpenContext(options.Ipv4, options.PrefixLength, options.GatewayIpv4, clock, log));
    }

    public VsoStackOptions Options { get; }

    public IPAddress Address => Options.Address;

    internal Ipv4Address Ipv4 => Options.Ipv4;

    /// <summary>The stack's hardware address on its link.</summary>
    public PhysicalAddress HardwareAddress => Core.Link.HardwareAddress.ToPhysicalAddress();

    /// <summary>The IP MTU of the stack's link.</summary>
    public int Mtu => Core.Link.Mtu;

    internal NetworkStack Core { get; }

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
    public int ConnectionCount => Core.Tcp.ConnectionCount;

    /// <summary>Exceptions that escaped frame processing and were contained; a healthy stack keeps it at 0.</summary>
    public long ContainedExceptions => Core.ContainedExceptions;

    /// <summary>
    /// Starts the stack's engine thread (real time). A stack on a <see cref="VirtualTimeDriver"/> is stepped by the
    /// driver instead, and this does nothing, so code that starts a stack it was given runs unchanged in virtual time.
    /// </summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_thread is not null || DrivenVirtually)
        {
            return;
        }

        _thread = new EngineThread(Core, $"vso-engine {Ipv4}");
        _thread.Start();
    }

    /// <summary>For a virtual-time driver: announce the address (gratuitous ARP).</summary>
    internal void StartVirtual() => Core.Start();

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
        return new VsoConnectionEndpoint(this, null);
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
        var connection = new VsoConnection(this, null);
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

        var connection = new VsoConnection(this, null, settings);
        connection.PostConnect(Ipv4Address.FromIPAddress(remote.Address), (ushort)remote.Port, localPort, cancellationToken);
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
        _thread?.Stop();
        Core.Dispose();
        _thread?.Dispose();
        _ownedLink?.Dispose();
        _meter.Dispose();
    }
}
