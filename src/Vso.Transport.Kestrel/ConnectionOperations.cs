using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The engine side of one Kestrel connection: the application's requests (written ranges, shutdown, abort, close,
/// input resumed) wait in a queue and are applied in the endpoint's next engine turn; the endpoint's events go to the
/// input pump, the writer and the connection context. The endpoint is touched on the engine thread only.
/// </summary>
internal sealed class ConnectionOperations : IVsoEndpointObserver
{
    private readonly VsoConnectionEndpoint _endpoint;
    // Two small queues swapped under a lock instead of a ConcurrentQueue: a ConcurrentQueue's first segment holds 32
    // slots (about 1.6 KiB per connection, idle ones included); these grow only as far as a turn's operations need.
    private readonly Lock _incomingLock = new();
    private Queue<Operation> _incoming = new(4);
    private Queue<Operation> _draining = new(4);
    private readonly string _connectionId;
    private readonly ILogger _log;
    private readonly Action _onEnded;
    private InputPump _input = null!;
    private VsoOutputWriter _output = null!;
    private PinnedBlockSendHost _host = null!;
    private bool _ended;

    public ConnectionOperations(VsoConnectionEndpoint endpoint, string connectionId, bool finOnError, ILogger log, Action onEnded)
    {
        _endpoint = endpoint;
        _connectionId = connectionId;
        FinOnError = finOnError;
        _log = log;
        _onEnded = onEnded;
    }

    /// <summary>RST on an application error (Abort, Output completed with an exception) unless FinOnError.</summary>
    public bool FinOnError { get; }

    /// <summary>Engine thread, once: the pieces the operations drive; the endpoint then reports to this object.</summary>
    public void Attach(InputPump input, VsoOutputWriter output, PinnedBlockSendHost host)
    {
        _input = input;
        _output = output;
        _host = host;
        _endpoint.Attach(this, host);
    }

    // ---- Any thread ----

    /// <summary>A written range of <paramref name="block"/>; the reference it carries passes to the send host.</summary>
    public void PostSend(BlockRef block, int start, int length) => Enqueue(new Operation(OperationKind.Send, block, start, length, null));

    public void PostShutdownSend() => Enqueue(new Operation(OperationKind.ShutdownSend, null, 0, 0, null));

    public void PostClose() => Enqueue(new Operation(OperationKind.Close, null, 0, 0, null));

    public void PostResumeRead() => Enqueue(new Operation(OperationKind.ResumeRead, null, 0, 0, null));

    /// <summary>Vso:ProxyProtocolTimeout ran out: a header still missing then is refused.</summary>
    public void PostProxyHeaderTimeout() => Enqueue(new Operation(OperationKind.ProxyHeaderTimeout, null, 0, 0, null));

    /// <summary>
    /// Resets the connection (RFC 9293 §3.10.5: RST, pending data discarded). As Kestrel's Sockets transport: with
    /// <see cref="VsoTransportOptions.FinOnError"/>, or without a reason, the connection ends with FIN after the flushed
    /// data instead. Either way the writer takes nothing more: later flushes report IsCompleted.
    /// </summary>
    public void PostAbort(ConnectionAbortedException? reason)
    {
        // Kestrel passes null when the connection ends in order: HTTP/1.1 and HTTP/2 after the client's FIN
        // (OnInputOrOutputCompleted), on which the Sockets transport's Shutdown(null) closes gracefully, not with RST.
        var fin = FinOnError || reason is null;
        if (fin)
        {
            _log.AbortedWithFin(_connectionId, reason?.Message ?? "no reason given");
        }
        else
        {
            _log.Aborted(_connectionId, reason!.Message);
        }

        _output.OnConnectionClosed();
        Enqueue(new Operation(fin ? OperationKind.AbortWithFin : OperationKind.Abort, null, 0, 0, reason));
    }

    /// <summary>Resets the connection whatever FinOnError says (RFC 9293 §3.10.5): the drain's deadline has passed.</summary>
    public void PostReset(ConnectionAbortedException reason)
    {
        _log.Aborted(_connectionId, reason.Message);
        _output.OnConnectionClosed();
        Enqueue(new Operation(OperationKind.Abort, null, 0, 0, reason));
    }

    private void Enqueue(in Operation operation)
    {
        lock (_incomingLock)
        {
            _incoming.Enqueue(operation);
        }

        _endpoint.RequestTurn();
    }

    // ---- Engine thread ----

    void IVsoEndpointObserver.OnTurn()
    {
        // Flushes that queued up since the last turn and continue each other in one block (Kestrel answering
        // pipelined requests one flush each) become one descriptor: fewer, fuller segments.
        Queue<Operation> operations;
        lock (_incomingLock)
        {
            operations = _incoming;
            _incoming = _draining;
            _draining = operations;
        }

        var pending = default(Operation);
        while (operations.TryDequeue(out var op))
        {
            if (op.Kind == OperationKind.Send)
            {
                if (pending.Block == op.Block && pending.Start + pending.Length == op.Start)
                {
                    // The merged descriptor holds one reference; drop the one this range brought.
                    op.Block!.Release();
                    pending = pending with { Length = pending.Length + op.Length };
                    continue;
                }

                if (pending.Block is not null)
                {
                    Apply(pending);
                }

                pending = op;
                continue;
            }

            if (pending.Block is not null)
            {
                Apply(pending);
                pending = default;
            }

            Apply(op);
        }

        if (pending.Block is not null)
        {
            Apply(pending);
        }
    }

    private void Apply(in Operation op)
    {
        switch (op.Kind)
        {
            case OperationKind.Send:
                var block = op.Block!;
                _host.Track(block);
                _input.OnSending();

                // HostToken/HostTag = block class and id/generation: CopyTo and Lease validate them against the pool.
                _endpoint.Enqueue(block.Block.Address + op.Start, op.Length, block.HostToken, block.Block.Generation);
                return;
            case OperationKind.ShutdownSend:
                _endpoint.ShutdownSend();
                return;
            case OperationKind.ResumeRead:
                _input.Resume();
                return;
            case OperationKind.ProxyHeaderTimeout:
                _input.OnProxyHeaderTimeout();
                return;
            case OperationKind.Abort:
                _input.Complete(op.Error);
                _endpoint.Abort();
                return;
            case OperationKind.AbortWithFin:
                _input.Complete(op.Error);
                _endpoint.ShutdownSend();
                return;
            case OperationKind.Close:
                _input.Complete(null);

                // RFC 2525 §2.17: closing with unread received data resets, so the peer knows it was lost.
                _endpoint.Close();
                return;
        }
    }

    void IVsoEndpointObserver.OnEstablished()
    {
    }

    void IVsoEndpointObserver.OnReadable() => _input.Pump();

    bool IVsoEndpointObserver.TryTakeInOrder(ReadOnlySpan<byte> payload) => _input.TryTake(payload);

    void IVsoEndpointObserver.OnClosed(TcpConnectionException? error)
    {
        if (_ended)
        {
            return;
        }

        _ended = true;
        _log.Closed(_connectionId, error?.Message ?? "closed in order");
        _input.OnClosed(error);
        _output.OnConnectionClosed();
        _onEnded();
    }

    private enum OperationKind : byte
    {
        Send,
        ShutdownSend,
        ResumeRead,
        ProxyHeaderTimeout,
        Abort,
        AbortWithFin,
        Close,
    }

    private readonly record struct Operation(OperationKind Kind, BlockRef? Block, int Start, int Length, Exception? Error);
}
