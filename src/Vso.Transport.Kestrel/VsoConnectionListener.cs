using System.Net;
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
    private readonly Channel<VsoTransportConnection> _accepted = Channel.CreateUnbounded<VsoTransportConnection>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly Action<VsoConnectionListener> _onUnbound;
    private VsoEndpointListener? _endpoints;
    private int _unbound;

    public VsoConnectionListener(VsoStack stack, PinnedBlockClasses blocks, VsoTransportOptions options, IPEndPoint endPoint, ILogger log, Action<VsoConnectionListener> onUnbound)
    {
        _stack = stack;
        _blocks = blocks;
        _options = options;
        _log = log;
        _onUnbound = onUnbound;
        EndPoint = endPoint;
    }

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

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var connection = await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            _endpoints!.TakeAccepted();
            _log.Accepted(connection.ConnectionId, connection.RemoteEndPoint?.ToString() ?? "?");
            return connection;
        }
        catch (ChannelClosedException)
        {
            // Unbound: Kestrel's accept loop ends on null.
            return null;
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _unbound, 1) == 0 && _endpoints is not null)
        {
            _endpoints.Dispose();
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

    public ValueTask DisposeAsync() => UnbindAsync();

    /// <summary>Engine thread: wraps an established connection for Kestrel's accept loop; false resets it.</summary>
    private bool OnAccepted(VsoConnectionEndpoint endpoint)
    {
#pragma warning disable CA2000 // Handed to Kestrel's accept loop, which disposes it; disposed here when it cannot be handed over.
        var connection = new VsoTransportConnection(endpoint, _blocks, _options, _log);
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
}
