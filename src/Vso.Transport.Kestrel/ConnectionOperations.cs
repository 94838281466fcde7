using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The engine side of one Kestrel connection: the application's requests (written ranges, shutdown, abort, close,
/// input resumed) wait in a queue and are applied in the endpoint's next engine turn; the endpoint's events go to the
/// input pump, the writer and the connection context. The endpoint is touched on the engine thread only.
/// A listener's operations are pooled (<see cref="ConnectionStatePool"/>) with their pump, pipe, writer and send host:
/// they go back once the TCP connection has ended and the application has disposed the connection, and
/// <see cref="Generation"/> changes then, so that a request still posted by the old connection is dropped.
/// </summary>
internal sealed class ConnectionOperations : IVsoEndpointObserver
{
    // Two small queues swapped under a lock instead of a ConcurrentQueue: a ConcurrentQueue's first segment holds 32
    // slots (about 1.6 KiB per connection, idle ones included); these grow only as far as a turn's operations need.
    private readonly Lock _incomingLock = new();
    private readonly ConnectionStatePool? _pool;
    private Queue<Operation> _incoming = new(4);
    private Queue<Operation> _draining = new(4);
    private VsoConnectionEndpoint _endpoint;
    private string _connectionId;
    private ILogger _log;
    private VsoTransportConnection? _owner;
    private readonly InputPump _input = null!;
    private readonly VsoOutputWriter _output = null!;
    private readonly PinnedBlockSendHost _host = null!;
    private int _generation;     // written under _incomingLock
    private bool _ended;         // engine thread: the TCP connection ended (OnClosed)
    private bool _released;      // engine thread: the application disposed the connection (Release posted)

    /// <summary>Tests: a set on its own, without a pool, pump or owner, to drive a writer directly.</summary>
    internal ConnectionOperations(VsoConnectionEndpoint endpoint, string connectionId, bool finOnError, ILogger log)
    {
        _endpoint = endpoint;
        _connectionId = connectionId;
        FinOnError = finOnError;
        _log = log;
    }

    /// <summary>A pooled set: the pump (with its pipe), the writer and the send host are built once and reset on reuse.</summary>
    public ConnectionOperations(ConnectionStatePool pool, PinnedBlockClasses blocks, VsoTransportOptions options)
    {
        _pool = pool;
        _endpoint = null!;
        _connectionId = string.Empty;
        _log = NullLogger.Instance;
        FinOnError = options.FinOnError;
        _input = new InputPump(this, blocks.Base, options.MaxReadBufferSize, options.ConnectionClosedOnPeerFin, options.ApplicationOnEngineThread, options.ReaderScheduler);
        _output = new VsoOutputWriter(this, blocks, options.MaxWriteBufferSize);
        _host = new PinnedBlockSendHost(blocks, _output);
    }

    /// <summary>RST on an application error (Abort, Output completed with an exception) unless FinOnError.</summary>
    public bool FinOnError { get; }

    /// <summary>Changes when the set goes back to its pool: a request carrying an older generation is dropped.</summary>
    public int Generation => Volatile.Read(ref _generation);

    public InputPump Input => _input;

    public VsoOutputWriter Output => _output;

    public PinnedBlockSendHost Host => _host;

    /// <summary>The connection this set serves now (engine thread; the pump tells it of the peer's FIN).</summary>
    public VsoTransportConnection? Owner => _owner;

    /// <summary>Engine thread (the accept callback): a pooled set starts serving <paramref name="owner"/> on <paramref name="endpoint"/>.</summary>
    public void Bind(VsoConnectionEndpoint endpoint, VsoTransportConnection owner, string connectionId, ILogger log)
    {
        _endpoint = endpoint;
        _owner = owner;
        _connectionId = connectionId;
        _log = log;
        _ended = false;
        _released = false;
        _input.Bind(endpoint);
        endpoint.Attach(this, _host);
    }

    // ---- Any thread ----

    /// <summary>A written range of <paramref name="block"/>; the reference it carries passes to the send host.</summary>
    public void PostSend(BlockRef block, int start, int length) => Enqueue(new Operation(OperationKind.Send, block, start, length, null));

    public void PostShutdownSend() => Enqueue(new Operation(OperationKind.ShutdownSend, null, 0, 0, null));

    /// <summary>The application disposed the connection: FIN after the queued data, or RST for unread input.</summary>
    public void PostClose(int generation) => TryEnqueue(new Operation(OperationKind.Close, null, 0, 0, null), generation, closeOutput: false);

    /// <summary>The application is done with the connection: the set returns to its pool once the TCP connection has ended too.</summary>
    public void PostRelease(int generation) => TryEnqueue(new Operation(OperationKind.Release, null, 0, 0, null), generation, closeOutput: false);

    public void PostResumeRead(int generation) => TryEnqueue(new Operation(OperationKind.ResumeRead, null, 0, 0, null), generation, closeOutput: false);

    /// <summary>Vso:ProxyProtocolTimeout ran out: a header still missing then is refused.</summary>
    public void PostProxyHeaderTimeout(int generation) => TryEnqueue(new Operation(OperationKind.ProxyHeaderTimeout, null, 0, 0, null), generation, closeOutput: false);

    /// <summary>
    /// Resets the connection (RFC 9293 §3.10.5: RST, pending data discarded). As Kestrel's Sockets transport: with
    /// <see cref="VsoTransportOptions.FinOnError"/>, or without a reason, the connection ends with FIN after the flushed
    /// data instead. Either way the writer takes nothing more: later flushes report IsCompleted.
    /// </summary>
    public void PostAbort(ConnectionAbortedException? reason) => PostAbort(reason, Generation);

    /// <inheritdoc cref="PostAbort(ConnectionAbortedException?)"/>
    public void PostAbort(ConnectionAbortedException? reason, int generation)
    {
        // Kestrel passes null when the connection ends in order: HTTP/1.1 and HTTP/2 after the client's FIN
        // (OnInputOrOutputCompleted), on which the Sockets transport's Shutdown(null) closes gracefully, not with RST.
        var fin = FinOnError || reason is null;
        if (!TryEnqueue(new Operation(fin ? OperationKind.AbortWithFin : OperationKind.Abort, null, 0, 0, reason), generation, closeOutput: true))
        {
            return;
        }

        if (fin)
        {
            _log.AbortedWithFin(_connectionId, reason?.Message ?? "no reason given");
        }
        else
        {
            _log.Aborted(_connectionId, reason!.Message);
        }
    }

    /// <summary>Resets the connection whatever FinOnError says (RFC 9293 §3.10.5): the drain's deadline has passed.</summary>
    public void PostReset(ConnectionAbortedException reason, int generation)
    {
        if (TryEnqueue(new Operation(OperationKind.Abort, null, 0, 0, reason), generation, closeOutput: true))
        {
            _log.Aborted(_connectionId, reason.Message);
        }
    }

    /// <summary>From the pooled set's own parts (writer, pump): always the current generation.</summary>
    private void Enqueue(in Operation operation)
    {
        VsoConnectionEndpoint endpoint;
        lock (_incomingLock)
        {
            _incoming.Enqueue(operation);
            endpoint = _endpoint;
        }

        endpoint.RequestTurn();
    }

    /// <summary>
    /// From the connection context (any thread): dropped, false, once the set serves another connection. With
    /// <paramref name="closeOutput"/> the writer is closed under the same check, so a stale abort never closes a new writer.
    /// </summary>
    private bool TryEnqueue(in Operation operation, int generation, bool closeOutput)
    {
        VsoConnectionEndpoint endpoint;
        lock (_incomingLock)
        {
            if (generation != _generation)
            {
                return false;
            }

            if (closeOutput)
            {
                _output.OnConnectionClosed();
            }

            _incoming.Enqueue(operation);
            endpoint = _endpoint;
        }

        endpoint.RequestTurn();
        return true;
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

        if (_released && _ended)
        {
            // After the loop: the queue being drained is empty, nothing of this turn refers to the set any more.
            ReturnToPool();
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
            case OperationKind.Release:
                _released = _pool is not null;
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
        _owner?.OnEnded();

        if (_released)
        {
            // Inside the TCP connection's processing: the set goes back in the endpoint's next turn, not under its feet.
            _endpoint.RequestTurn();
        }
    }

    /// <summary>
    /// Engine thread, in a turn: the TCP connection has ended and the application has disposed the connection. Stale
    /// requests are dropped from now on (the generation changes under the queue's lock), the endpoint stops reporting to
    /// this set, and the set, reset, goes back to the pool, unless something still refers to its memory (then the
    /// garbage collector takes it, as before pooling).
    /// </summary>
    private void ReturnToPool()
    {
        lock (_incomingLock)
        {
            _generation++;
            DropQueued(_incoming);
        }

        DropQueued(_draining);
        _endpoint.Release();
        _endpoint = null!;
        _owner = null;
        _connectionId = string.Empty;
        _log = NullLogger.Instance;
        _released = false;
        _ended = false;
        var reusable = _input.TryReset() & _output.TryReset() & _host.TryReset();
        if (reusable)
        {
            _pool!.Return(this);
        }
    }

    /// <summary>Operations left behind by a connection that is gone: their block references are let go.</summary>
    private static void DropQueued(Queue<Operation> queue)
    {
        while (queue.TryDequeue(out var op))
        {
            op.Block?.Release();
        }
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
        Release,
    }

    private readonly record struct Operation(OperationKind Kind, BlockRef? Block, int Start, int Length, Exception? Error);
}
