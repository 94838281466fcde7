using System.Net;
using Vso.MemoryPinning;
using Vso.Transport.Engine;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Api;

/// <summary>
/// The engine-facing endpoint of one TCP connection: the one seam through which an embedding drives TCP. It queues
/// descriptors of the host's memory, reads received bytes, shuts down, aborts, and tells its
/// <see cref="IVsoEndpointObserver"/> of the connection's life; the bytes behind the descriptors belong to its
/// <see cref="IVsoSendHost"/>. <see cref="VsoConnection"/> and the Kestrel transport both build on it.
/// Only <see cref="RequestTurn"/>, the end points and <see cref="GetInfo"/> may be used from any thread; every other
/// member belongs to the engine thread, that is, to the observer's callbacks.
/// </summary>
public sealed class VsoConnectionEndpoint
{
    private readonly VsoStack _stack;
    private readonly NetworkStack _shard;
    private readonly EngineSide _engine;
    private IVsoEndpointObserver? _observer;
    private IVsoSendHost? _host;
    private TcpConnection? _tcp;
    private int _turnRequested;
    private bool _released;
    private ConnectionId _id;   // the connection's 4-tuple, kept after Release (a pooled TcpConnection takes another)
    private bool _bound;
    private volatile bool _applicationStalled;

    internal VsoConnectionEndpoint(VsoStack stack, NetworkStack shard, TcpConnection? accepted)
    {
        _stack = stack;
        _shard = shard;
        _engine = new EngineSide(this);
        if (accepted is not null)
        {
            Bind(accepted);
        }
    }

    /// <summary>The shard whose engine thread runs this connection (its turns, its gate).</summary>
    internal NetworkStack Shard => _shard;

    /// <summary>The TCP connection once open (engine thread; tests and <see cref="VsoConnection"/> read it).</summary>
    internal TcpConnection? Tcp => _tcp;

    /// <summary>The sender's view of the host (tests wrap it to refuse descriptors).</summary>
    internal ISendHost TcpHost => _engine;

    /// <summary>Whether a TCP connection stands behind the endpoint (accepted, or <see cref="Connect"/> called).</summary>
    public bool IsOpen => _tcp is not null;

    /// <summary>Where the connection is bound locally; still answered after <see cref="Release"/> (the 4-tuple is kept).</summary>
    public IPEndPoint? LocalEndPoint => _bound ? new IPEndPoint(_id.LocalAddress.ToIPAddress(), _id.LocalPort) : null;

    /// <summary>The peer's address and port; still answered after <see cref="Release"/>.</summary>
    public IPEndPoint? RemoteEndPoint => _bound ? new IPEndPoint(_id.RemoteAddress.ToIPAddress(), _id.RemotePort) : null;

    /// <summary>A snapshot of the connection's TCP state, taken between two turns of the engine (any thread).</summary>
    public TcpConnectionInfo GetInfo()
    {
        lock (_shard.Gate)
        {
            return _tcp is { } t ? TcpConnectionInfo.From(t) : new TcpConnectionInfo { State = TcpState.Closed };
        }
    }

    /// <summary>
    /// Sets who is told of the connection and who owns the bytes it sends. Once, before the first turn: from the
    /// accept callback (engine thread) or before <see cref="RequestTurn"/> is first called.
    /// </summary>
    public void Attach(IVsoEndpointObserver observer, IVsoSendHost host)
    {
        ArgumentNullException.ThrowIfNull(observer);
        ArgumentNullException.ThrowIfNull(host);
        if (_observer is not null)
        {
            throw new InvalidOperationException("The endpoint already has an observer and a host.");
        }

        _observer = observer;
        _host = host;
    }

    /// <summary>Any thread: asks for one turn on the engine thread, in which the observer's <see cref="IVsoEndpointObserver.OnTurn"/> runs.</summary>
    public void RequestTurn()
    {
        if (Interlocked.Exchange(ref _turnRequested, 1) == 0)
        {
            _shard.Post(_engine);
        }
    }

    /// <summary>
    /// From inside an engine turn (an observer callback, such as a pipe flush that wakes a reader): runs
    /// <paramref name="continuation"/> on this engine thread right after the turn, outside the engine's state, instead of
    /// hopping to another thread. False when it cannot (not on the engine thread's own turn, its loop relieved, or this
    /// connection's application once held the engine thread too long): the caller runs it elsewhere. A continuation that
    /// blocks is relieved: the engine's loop moves to another thread until it returns, and the connection's later
    /// continuations are refused here.
    /// </summary>
    public bool TryRunAfterTurn(Action<object?> continuation, object? state)
    {
        ArgumentNullException.ThrowIfNull(continuation);
        return _shard.AfterTurn.TryAdd(continuation, state, this);
    }

    /// <summary>This connection's application held the engine thread so long that the loop was relieved (any thread).</summary>
    internal bool ApplicationStalled => _applicationStalled;

    internal void MarkApplicationStalled() => _applicationStalled = true;

    // ---- Engine thread ----

    /// <summary>Active open (RFC 9293 §3.10.1) from an ephemeral port. Throws <see cref="InvalidOperationException"/> if none is free.</summary>
    public void Connect(IPAddress remote, ushort port)
    {
        ArgumentNullException.ThrowIfNull(remote);
        Connect(Ipv4Address.FromIPAddress(remote), port, null, 0);
    }

    /// <summary>Active open with the connection's own <paramref name="settings"/> (null: a copy of the stack's) from <paramref name="localPort"/> (0: ephemeral).</summary>
    internal void Connect(Ipv4Address remote, ushort port, TcpSettings? settings, ushort localPort)
    {
        ObjectDisposedException.ThrowIf(_released, this);
        if (_tcp is not null)
        {
            throw new InvalidOperationException("The endpoint is already open.");
        }

        Bind(_shard.Tcp.Connect(remote, port, _engine, settings, localPort));
    }

    /// <summary>The connection's state (RFC 9293 §3.3.2).</summary>
    public TcpState State => _tcp?.State ?? TcpState.Closed;

    /// <summary>Why the connection failed, once it has; null while it works or after an orderly close.</summary>
    public TcpConnectionException? Error => _tcp?.Error;

    /// <summary>In-order bytes received and not yet read.</summary>
    public int ReadableBytes => _tcp?.ReadableBytes ?? 0;

    /// <summary>The peer closed its side and every byte before its FIN has been read.</summary>
    public bool IsEndOfStream => _tcp?.IsEndOfStream ?? false;

    /// <summary>
    /// Queues <paramref name="length"/> bytes of the host's pinned memory at <paramref name="address"/>; the two host words
    /// come back in the <see cref="VsoSendRange"/> the host is asked about. The host learns the range's fate through
    /// <see cref="IVsoSendHost.Acknowledged"/> or <see cref="IVsoSendHost.Failed"/> (at once if the connection cannot send).
    /// </summary>
    public void Enqueue(nint address, int length, long hostToken, long hostTag)
    {
        var tcp = OpenConnection();
        if (tcp.Sender.Host is null)
        {
            // TIME-WAIT let go of the host (the connection is closed for sending): refuse here, as the connection would.
            Host.Failed(new VsoSendRange(address, length, hostToken, hostTag), tcp.Error ?? new TcpConnectionException(TcpError.Aborted, $"Connection {tcp.Id} is closed for sending."));
            return;
        }

        tcp.Enqueue(address, length, hostToken, hostTag);
    }

    /// <summary>Copies readable bytes out; returns how many (0 if none). Opens the window again when it has grown enough.</summary>
    public int Read(Span<byte> destination) => _tcp?.Read(destination) ?? 0;

    /// <summary>Half-close (RFC 9293 §3.10.4): FIN after every queued byte.</summary>
    public void ShutdownSend() => _tcp?.ShutdownSend();

    /// <summary>Abort (RFC 9293 §3.10.5): RST to the peer, every pending operation fails.</summary>
    public void Abort() => _tcp?.Abort();

    /// <summary>
    /// Close for the application: FIN after the queued data, or RST if received data was left unread
    /// (RFC 2525 §2.17: the peer must learn it was lost).
    /// </summary>
    public void Close()
    {
        if (_tcp is not { } tcp)
        {
            return;
        }

        if (tcp.State != TcpState.Closed && tcp.ReadableBytes > 0)
        {
            tcp.Abort();
        }
        else
        {
            tcp.ShutdownSend();
        }
    }

    /// <summary>
    /// Engine thread: the embedding is done with the endpoint, normally after the connection has ended
    /// (<see cref="IVsoEndpointObserver.OnClosed"/>); one still open is reset first (RFC 9293 §3.10.5). Its observer and
    /// host hear nothing more (they may serve another connection), and the stack may reuse the connection's state for a
    /// new one: the endpoint reads as closed from now on, and <see cref="Enqueue"/> or <see cref="Connect"/> throw
    /// <see cref="ObjectDisposedException"/>.
    /// </summary>
    public void Release()
    {
        if (_released)
        {
            return;
        }

        if (_tcp is { IsTerminated: false } open)
        {
            open.Abort();
            _shard.Tcp.AfterEvent(open);
        }

        _released = true;
        _observer = null;
        _host = null;
        var tcp = _tcp;
        _tcp = null;
        tcp?.ReleaseByOwner();
    }

    private TcpConnection OpenConnection()
    {
        ObjectDisposedException.ThrowIf(_released, this);
        return _tcp ?? throw new InvalidOperationException("The endpoint is not open.");
    }

    private void Bind(TcpConnection tcp)
    {
        _tcp = tcp;
        _id = tcp.Id;
        _bound = true;
        tcp.Observer = _engine;
        tcp.SetHost(_engine);
    }

    private IVsoSendHost Host => _host ?? throw new InvalidOperationException("The endpoint has no send host: call Attach before queuing.");

    private static VsoSendRange View(SendDescriptor descriptor) =>
        new(descriptor.Address, descriptor.Length, descriptor.HostToken, descriptor.HostTag);

    /// <summary>
    /// The engine's view of the endpoint: its work item, the TCP connection's observer and its send host. Private, so
    /// that no application can call these engine-thread members.
    /// </summary>
    private sealed class EngineSide(VsoConnectionEndpoint endpoint) : IEngineWork, ITcpConnectionObserver, ISendHost
    {
        /// <summary>A turn that throws aborts this endpoint's connection only (the engine's containment).</summary>
        TcpConnection? IEngineWork.Connection => endpoint._tcp;

        void IEngineWork.Execute()
        {
            Volatile.Write(ref endpoint._turnRequested, 0);
            endpoint._observer?.OnTurn();
            if (endpoint._tcp is { } tcp)
            {
                endpoint._shard.Tcp.AfterEvent(tcp);
            }
        }

        void ITcpConnectionObserver.OnEstablished(TcpConnection connection) => endpoint._observer?.OnEstablished();

        void ITcpConnectionObserver.OnReadable(TcpConnection connection) => endpoint._observer?.OnReadable();

        bool ITcpConnectionObserver.TryTakeInOrder(TcpConnection connection, ReadOnlySpan<byte> payload) =>
            endpoint._observer?.TryTakeInOrder(payload) ?? false;

        void ITcpConnectionObserver.OnClosed(TcpConnection connection, TcpConnectionException? error) => endpoint._observer?.OnClosed(error);

        void ISendHost.CopyTo(SendDescriptor descriptor, int offset, Span<byte> destination) =>
            endpoint.Host.CopyTo(View(descriptor), offset, destination);

        PinLease ISendHost.Lease(SendDescriptor descriptor, int offset, int length) =>
            endpoint.Host.Lease(View(descriptor), offset, length);

        void ISendHost.Acknowledged(SendDescriptor descriptor) => endpoint.Host.Acknowledged(View(descriptor));

        void ISendHost.Failed(SendDescriptor descriptor, Exception error) => endpoint.Host.Failed(View(descriptor), error);
    }
}
