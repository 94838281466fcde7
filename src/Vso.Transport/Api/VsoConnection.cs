using System.Collections.Concurrent;
using System.Net;
using System.Threading.Tasks.Sources;
using Vso.MemoryPinning;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Api;

/// <summary>
/// One TCP connection of the embedding API. <see cref="SendAsync"/> pins the caller's memory and queues a
/// descriptor of it: no copy is made, and the task completes once the peer has acknowledged every byte
/// and no frame still reads it. Operations may come from any thread; the engine thread applies them.
/// </summary>
public sealed class VsoConnection
{
    private readonly VsoStack _stack;
    private readonly VsoConnectionEndpoint _endpoint;
    private readonly EngineSide _engine;
    private readonly ConcurrentQueue<Operation> _operations = new();
    private readonly SendRegistrations _sends;
    private readonly TaskCompletionSource<VsoConnection> _connected;
    private readonly TaskCompletionSource _closed;
    private Memory<byte> _pendingReceive;
    private bool _receivePending;           // engine thread: a receive waits for bytes, the end of stream or an error
    private int _receiveBusy;               // 1 from ReceiveAsync until its result is taken (GetResult)
    private ManualResetValueTaskSourceCore<int> _receive; // the one reusable completion of ReceiveAsync
    private TcpConnectionException? _error;
    private bool _closedInOrder;

    /// <summary>An accepted connection (<paramref name="accepted"/>, engine thread) or one to connect (null).</summary>
    internal VsoConnection(VsoStack stack, VsoConnectionEndpoint? accepted)
    {
        _stack = stack;
        _engine = new EngineSide(this);
        _sends = new SendRegistrations(stack.PinAccounting.Pinner);
        _connected = stack.NewCompletion<VsoConnection>();
        _closed = stack.NewCompletion();
        _receive.RunContinuationsAsynchronously = !stack.Options.InlineContinuations;
        _endpoint = accepted ?? stack.CreateEndpoint();
        _endpoint.Attach(_engine, _engine);
        if (accepted is not null)
        {
            _connected.TrySetResult(this);
        }
    }

    internal Task<VsoConnection> Connected => _connected.Task;

    /// <summary>Completes when the connection has ended for the application: closed in order, reset, or failed.</summary>
    public Task Closed => _closed.Task;

    public IPEndPoint? LocalEndPoint => _endpoint.LocalEndPoint;

    public IPEndPoint? RemoteEndPoint => _endpoint.RemoteEndPoint;

    /// <summary>A snapshot of the connection's TCP state (read without stopping the engine; fields may be a turn apart).</summary>
    public TcpConnectionInfo GetInfo() => _endpoint.GetInfo();

    internal TcpConnection? Tcp => _endpoint.Tcp;

    internal VsoConnectionEndpoint Endpoint => _endpoint;

    /// <summary>The send host over the caller's pinned memory (tests hand it stale ranges).</summary>
    internal IVsoSendHost SendHost => _engine;

    /// <summary>
    /// Sends <paramref name="data"/> without copying it: the memory stays pinned (and mlocked when
    /// <see cref="VsoStackOptions.Mlock"/> is set) and must not change until the task completes, which happens
    /// when the peer acknowledged all of it and no frame still reads it. Fails if the connection cannot deliver,
    /// or with <see cref="MemoryLockException"/> if the memory could not be locked.
    /// </summary>
    public Task SendAsync(ReadOnlyMemory<byte> data)
    {
        var completion = _stack.NewCompletion();
        if (data.IsEmpty)
        {
            completion.SetResult();
            return completion.Task;
        }

        Enqueue(new Operation(OperationKind.Send, data, default, completion));
        return completion.Task;
    }

    /// <summary>
    /// Receives into <paramref name="buffer"/>; 0 means the peer closed its side. One receive at a time: await it (once)
    /// before the next. Allocates nothing: the ValueTask is backed by one reusable completion of the connection.
    /// </summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> buffer)
    {
        if (Interlocked.CompareExchange(ref _receiveBusy, 1, 0) != 0)
        {
            if (_receive.GetStatus(_receive.Version) == ValueTaskSourceStatus.Pending)
            {
                return ValueTask.FromException<int>(new InvalidOperationException("A receive is already pending on this connection; await it before the next."));
            }

            // The previous receive completed but its result was never taken: its bytes are in its buffer; start afresh.
            _receive.Reset();
        }

        var version = _receive.Version;
        Enqueue(new Operation(OperationKind.Receive, default, buffer, null));
        return new ValueTask<int>(_engine, version);
    }

    /// <summary>Sends FIN after everything queued (half-close); receiving goes on.</summary>
    public void ShutdownSend() => Enqueue(new Operation(OperationKind.Shutdown, default, default, null));

    /// <summary>
    /// Closes: FIN after queued data, or RST if received data was left unread (RFC 2525 §2.17).
    /// Completes when the connection has ended for the application.
    /// </summary>
    public Task CloseAsync()
    {
        Enqueue(new Operation(OperationKind.Close, default, default, null));
        return Closed;
    }

    /// <summary>Resets the connection (RST); pending operations fail.</summary>
    public void Abort() => Enqueue(new Operation(OperationKind.Abort, default, default, null));

    internal void PostConnect(Ipv4Address remote, ushort port) =>
        Enqueue(new Operation(OperationKind.Connect, default, default, null) { Remote = remote, Port = port });

    private void Enqueue(in Operation operation)
    {
        _operations.Enqueue(operation);
        _endpoint.RequestTurn();
    }

    private int TakeReceiveResult(short token)
    {
        try
        {
            return _receive.GetResult(token);
        }
        finally
        {
            _receive.Reset();
            Volatile.Write(ref _receiveBusy, 0);
        }
    }

    // ---- Engine thread ----

    private void ApplyOperations()
    {
        while (_operations.TryDequeue(out var op))
        {
            Apply(op);
        }
    }

    private void Apply(in Operation op)
    {
        if (op.Kind == OperationKind.Connect)
        {
            try
            {
                _endpoint.Connect(op.Remote, op.Port);
            }
            catch (InvalidOperationException ex)
            {
                _connected.TrySetException(ex);
            }

            return;
        }

        var open = _endpoint.IsOpen;
        var error = _error ?? _endpoint.Error;
        switch (op.Kind)
        {
            case OperationKind.Send:
                if (!open || error is not null)
                {
                    op.SendCompletion!.TrySetException(error ?? new TcpConnectionException(TcpError.Aborted, "The connection is not open."));
                    return;
                }

                (int Slot, long Generation, nint Address) registration;
                try
                {
                    registration = _sends.Register(op.Send, op.SendCompletion!);
                }
                catch (MemoryLockException ex)
                {
                    // mlock refused (RLIMIT_MEMLOCK): this send fails, the connection goes on.
                    op.SendCompletion!.TrySetException(ex);
                    return;
                }

                _endpoint.Enqueue(registration.Address, op.Send.Length, registration.Slot, registration.Generation);
                return;
            case OperationKind.Receive:
                // ReceiveAsync let only one through (_receiveBusy), so none is pending here.
                _pendingReceive = op.Receive;
                _receivePending = true;
                TryCompleteReceive();
                return;
            case OperationKind.Shutdown:
                _endpoint.ShutdownSend();
                return;
            case OperationKind.Close:
                if (!open)
                {
                    _closed.TrySetResult();
                }
                else
                {
                    _endpoint.Close();
                }

                return;
            case OperationKind.Abort:
                _endpoint.Abort();
                return;
        }
    }

    private void TryCompleteReceive()
    {
        if (!_receivePending || !_endpoint.IsOpen)
        {
            return;
        }

        if (_endpoint.ReadableBytes > 0)
        {
            var n = _endpoint.Read(_pendingReceive.Span);
            _receivePending = false;
            _pendingReceive = default;
            _receive.SetResult(n);
            return;
        }

        var error = _error ?? _endpoint.Error;
        if (error is not null)
        {
            _receivePending = false;
            _pendingReceive = default;
            _receive.SetException(error);
            return;
        }

        if (_endpoint.IsEndOfStream || (_endpoint.State == TcpState.Closed && _closedInOrder))
        {
            _receivePending = false;
            _pendingReceive = default;
            _receive.SetResult(0);
        }
    }

    private void OnClosed(TcpConnectionException? error)
    {
        _error ??= error;
        _closedInOrder = error is null;
        if (error is not null)
        {
            _connected.TrySetException(error);
        }

        TryCompleteReceive();
        _closed.TrySetResult();
    }

    /// <summary>
    /// The connection's engine-side interfaces: the endpoint's observer, the send host over the caller's pinned memory
    /// (identified by descriptor), and the completion behind <see cref="ReceiveAsync"/>. Private, so that an application
    /// cannot call these engine-thread members.
    /// </summary>
    private sealed class EngineSide(VsoConnection connection) : IVsoEndpointObserver, IVsoSendHost, IValueTaskSource<int>
    {
        void IVsoEndpointObserver.OnTurn() => connection.ApplyOperations();

        void IVsoEndpointObserver.OnEstablished() => connection._connected.TrySetResult(connection);

        void IVsoEndpointObserver.OnReadable() => connection.TryCompleteReceive();

        void IVsoEndpointObserver.OnClosed(TcpConnectionException? error) => connection.OnClosed(error);

        void IVsoSendHost.CopyTo(VsoSendRange range, int offset, Span<byte> destination) =>
            connection._sends.Read(range, offset, destination.Length).CopyTo(destination);

        PinLease IVsoSendHost.Lease(VsoSendRange range, int offset, int length) => connection._sends.Lease(range, offset, length);

        void IVsoSendHost.Acknowledged(VsoSendRange range) => connection._sends.Complete(range, null);

        void IVsoSendHost.Failed(VsoSendRange range, Exception error) => connection._sends.Complete(range, error);

        int IValueTaskSource<int>.GetResult(short token) => connection.TakeReceiveResult(token);

        ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => connection._receive.GetStatus(token);

        void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            connection._receive.OnCompleted(continuation, state, token, flags);
    }

    private enum OperationKind : byte
    {
        Connect,
        Send,
        Receive,
        Shutdown,
        Close,
        Abort,
    }

    private readonly record struct Operation(OperationKind Kind, ReadOnlyMemory<byte> Send, Memory<byte> Receive, TaskCompletionSource? SendCompletion)
    {
        public Ipv4Address Remote { get; init; }

        public ushort Port { get; init; }
    }
}
