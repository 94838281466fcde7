using System.Net;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Vso.Transport.Api;

namespace Vso.Transport.Kestrel;

/// <summary>
/// A port bound on the stack's address (RFC 9293 §3.10.1 LISTEN). Established connections are wrapped on the engine
/// thread and queued for Kestrel's accept loop. Unbinding stops accepting at once (new SYNs are answered with RST by
/// the stack) and resets connections not yet accepted; accepted connections live on until Kestrel ends them.
/// </summary>
internal sealed class VsoConnectionListener : IConnectionListener
{
    private readonly VsoStack _stack;
    private readonly PinnedBlockClasses _blocks;
    private readonly VsoTransportOptions _options;
    private readonly ILogger _log;
    // Synchronous continuations: Kestrel's accept loop, waiting in AcceptAsync, resumes on the engine thread that accepted
    // (it only registers the connection and queues it to the thread pool, then waits again), saving one thread hop per
    // new connection (issue 12, connection setup). Every engine (shard) writes the connections it accepted.
    private readonly Channel<VsoTransportConnection> _accepted = Channel.CreateUnbounded<VsoTransportConnection>(new UnboundedChannelOptions { SingleWriter = false, AllowSynchronousContinuations = true });
    private readonly Action<VsoConnectionListener> _onUnbound;
    private readonly VsoTransportMetrics _metrics;
    private readonly ProxyProtocolPolicy? _proxy;
    private readonly VsoProxyProtocol _proxyMode;
    private readonly Action<VsoTransportConnection, ProxyRejection> _onProxyHeader;
    private readonly ConnectionDrain _drain;
    private readonly ConnectionStatePool _states;
    private VsoEndpointListener? _endpoints;
    private int _unbound;
    private int _disposed;

    public VsoConnectionListener(
        VsoStack stack,
        PinnedBlockClasses blocks,
        VsoTransportOptions options,
        IPEndPoint endPoint,
        ILogger log,
        Action<VsoConnectionListener> onUnbound,
        VsoTransportMetrics metrics,
        ProxyProtocolPolicy? proxy)
    {
        _stack = stack;
        _blocks = blocks;
        _options = options;
        _log = log;
        _onUnbound = onUnbound;
        _metrics = metrics;
        _proxy = proxy;
        _proxyMode = proxy?.ModeFor(endPoint.Port) ?? VsoProxyProtocol.None;
        _onProxyHeader = OnProxyHeader;
        EndPoint = endPoint;
        _drain = new ConnectionDrain(metrics, log, endPoint.ToString(), options.DrainTimeout);
        _states = new ConnectionStatePool(blocks, options);
    }

    /// <summary>The per-connection state this listener's connections reuse (tests read it).</summary>
    internal ConnectionStatePool States => _states;

    /// <summary>The drain that starts when the listener is unbound (tests read its counts).</summary>
    internal ConnectionDrain Drain => _drain;

    /// <summary>Where the listener is bound; for port 0, the port the stack chose (Kestrel reports it as the server's address).</summary>
    public EndPoint EndPoint { get; private set; }

    internal void Bind()
    {
        var endPoint = (IPEndPoint)EndPoint;
        try
        {
            _endpoints = _stack.ListenEndpoints((ushort)endPoint.Port, _options.Tcp.Backlog, OnAccepted);
        }
        catch (InvalidOperationException ex)
        {
            throw new AddressInUseException($"Vso transport: {endPoint} is already bound on the stack ({ex.Message}).", ex);
        }

        if (endPoint.Port == 0)
        {
            EndPoint = endPoint = new IPEndPoint(endPoint.Address, _endpoints.Port);
        }

        _log.Bound(endPoint.ToString());
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))] // its state machine reused, not one per connection
    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var connection = await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            _endpoints!.TakeAccepted();
            if (_log.IsEnabled(LogLevel.Debug))
            {
                _log.Accepted(connection.ConnectionId, connection.RemoteEndPoint?.ToString() ?? "?");
            }

            return connection;
        }
        catch (ChannelClosedException)
        {
            // Unbound: Kestrel's accept loop ends on null.
            return null;
        }
    }

    /// <summary>
    /// Kestrel's StopAsync begins here: no new connection (RST, or silence with Vso:DrainNewConnections=Drop), and the
    /// drain of the open ones starts (<see cref="ConnectionDrain"/>). Connections accepted but not yet taken are reset.
    /// </summary>
    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _unbound, 1) == 0 && _endpoints is not null)
        {
            var drop = _options.DrainNewConnections == VsoDrainNewConnections.Drop;
            if (drop)
            {
                _endpoints.StopAccepting();
            }
            else
            {
                _endpoints.Dispose();
            }

            _drain.Start(drop ? "no answer" : "RST");
            _accepted.Writer.TryComplete();

            // Established but never accepted: reset them (their peers must not wait for an answer that never comes).
            while (_accepted.Reader.TryRead(out var pending))
            {
                pending.Abort(new ConnectionAbortedException("The listener was unbound before the connection was accepted."));
                _endpoints.TakeAccepted();
            }

            _log.Unbound(EndPoint.ToString()!);
            _onUnbound(this);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Kestrel disposes the listener once its connections are closed or aborted: the port is released (a silenced one too).</summary>
    public async ValueTask DisposeAsync()
    {
        await UnbindAsync().ConfigureAwait(false);
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _endpoints?.Dispose();
            _drain.Dispose();
        }
    }

    /// <summary>Engine thread: wraps an established connection for Kestrel's accept loop; false resets it.</summary>
    private bool OnAccepted(VsoConnectionEndpoint endpoint)
    {
        if (_proxyMode != VsoProxyProtocol.None)
        {
            if (!_proxy!.IsTrusted(endpoint.RemoteEndPoint))
            {
                // proxy-protocol.txt §2: only trusted balancers may speak for their clients. Reset before a byte is read.
                _metrics.Rejected(ProxyRejection.Untrusted);
                _log.ProxyHeaderRefused(endpoint.RemoteEndPoint?.ToString() ?? "?", VsoTransportMetrics.ReasonName(ProxyRejection.Untrusted));
                return false;
            }

            // Handed to Kestrel by OnProxyHeader once the header is read (maybe at once, from the bytes already here).
#pragma warning disable CA2000 // Disposed by OnProxyHeader when refused, by Kestrel once handed over.
            _ = new VsoTransportConnection(endpoint, _states.Rent(), _blocks, _options, _log, _proxyMode, _onProxyHeader, _drain);
#pragma warning restore CA2000
            return true;
        }

#pragma warning disable CA2000 // Handed to Kestrel's accept loop, which disposes it; disposed here when it cannot be handed over.
        var connection = new VsoTransportConnection(endpoint, _states.Rent(), _blocks, _options, _log, drain: _drain);
#pragma warning restore CA2000
        if (_accepted.Writer.TryWrite(connection))
        {
            return true;
        }

        // The listener is closing and nobody will accept it: its input pipe may already hold pooled blocks. Disposing
        // returns them (and closes, asynchronously, what the reset leaves); the endpoint itself is reset by false.
        _ = connection.DisposeAsync().AsTask();
        return false;
    }

    /// <summary>Engine thread: a connection's PROXY header was read (None) or refused; its backlog place is given back either way.</summary>
    private void OnProxyHeader(VsoTransportConnection connection, ProxyRejection rejection)
    {
        if (rejection == ProxyRejection.None)
        {
            _metrics.ProxyHeadersAccepted.Add(1);
            if (_accepted.Writer.TryWrite(connection))
            {
                return;
            }

            connection.Abort(new ConnectionAbortedException("The listener was unbound before the connection was accepted."));
        }
        else
        {
            // proxy-protocol.txt §2.1: a sequence that does not match the protocol aborts the connection.
            _metrics.Rejected(rejection);
            _log.ProxyHeaderRefused(connection.RemoteEndPoint?.ToString() ?? "?", VsoTransportMetrics.ReasonName(rejection));
            connection.Abort(new ConnectionAbortedException("The PROXY protocol header was refused."));
        }

        _ = connection.DisposeAsync().AsTask();
        _endpoints!.TakeAccepted();
    }
}
