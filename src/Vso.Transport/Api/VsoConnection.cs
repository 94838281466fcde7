using System.Collections.Concurrent;
using System.Net;
using System.Threading.Tasks.Sources;
using Vso.MemoryPinning;
using Vso.Transport.Engine;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Api;

/// <summary>
/// One TCP connection of the embedding API. <see cref="SendAsync"/> pins the caller's memory and queues a
/// descriptor of it: no copy is made, and the task completes once the peer has acknowledged every byte
/// and no frame still reads it. Operations may come from any thread; the engine thread applies them.
/// </summary>
public sealed class VsoConnection : IEngineWork, ITcpConnectionObserver, ISendHost, IValueTaskSource<int>
{
    private readonly VsoStack _stack;
    private readonly ConcurrentQueue<Operation> _operations = new();
    private readonly SendRegistrations _sends;
    private readonly TaskCompletionSource<VsoConnection> _connected;
    private readonly TaskCompletionSource _closed;
    private TcpConnection? _tcp;
    private int _posted;
    private Memory<byte> _pendingReceive;
    private bool _receivePending;           // engine thread: a receive waits for bytes, the end of stream or an error
    private int _receiveBusy;               // 1 from ReceiveAsync until its result is taken (GetResult)
    private ManualResetValueTaskSourceCore<int> _receive; // the one reusable completion of ReceiveAsync
    private TcpConnectionException? _error;

    internal VsoConnection(VsoStack stack, TcpConnection? accepted)
    {
        _stack = stack;
        _sends = new SendRegistrations(stack.PinAccounting.Pinner);
        _connected = stack.NewCompletion<VsoConnection>();
        _closed = stack.NewCompletion();
        _receive.RunContinuationsAsynchronously = !stack.Options.InlineContinuations;
        if (accepted is not null)
        {
            Attach(accepted);
            _connected.TrySetResult(this);
        }
    }

    internal Task<VsoConnection> Connected => _connected.Task;

    /// <summary>Completes when the connection has ended for the application: closed in order, reset, or failed.</summary>
    public Task Closed => _closed.Task;

    public IPEndPoint? LocalEndPoint => _tcp is { } t ? new IPEndPoint(t.Id.LocalAddress.ToIPAddress(), t.Id.LocalPort) : null;

    public IPEndPoint? RemoteEndPoint => _tcp is { } t ? new IPEndPoint(t.Id.RemoteAddress.ToIPAddress(), t.Id.RemotePort) : null;

    /// <summary>A snapshot of the connection's TCP state (read without stopping the engine; fields may be a turn apart).</summary>
    public TcpConnectionInfo GetInfo() => _tcp is { } t ? TcpConnectionInfo.From(t) : new TcpConnectionInfo { State = TcpState.Closed };

    internal TcpConnection? Tcp => _tcp;

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
        return new ValueTask<int>(this, version);
    }

    int IValueTaskSource<int>.GetResult(short token)
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

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _receive.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _receive.OnCompleted(continuation, state, token, flags);

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
        if (Interlocked.Exchange(ref _posted, 1) == 0)
        {
            _stack.Core.Post(this);
        }
    }

    private void Attach(TcpConnection tcp)
    {
        _tcp = tcp;
        tcp.Observer = this;
        tcp.SetHost(this);
    }

    // ---- Engine thread ----

    TcpConnection? IEngineWork.Connection => _tcp;

    void IEngineWork.Execute()
    {
        Volatile.Write(ref _posted, 0);
        while (_operations.TryDequeue(out var op))
        {
            Apply(op);
        }

        if (_tcp is not null)
        {
            _stack.Core.Tcp.AfterEvent(_tcp);
        }
    }

    private void Apply(in Operation op)
    {
        if (op.Kind == OperationKind.Connect)
        {
            try
            {
                Attach(_stack.Core.Tcp.Connect(op.Remote, op.Port, this));
            }
            catch (InvalidOperationException ex)
            {
                _connected.TrySetException(ex);
            }

            return;
        }

        var tcp = _tcp;
        var error = _error ?? tcp?.Error;
        switch (op.Kind)
        {
            case OperationKind.Send:
                if (tcp is null || error is not null)
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

                tcp.Enqueue(registration.Address, op.Send.Length, registration.Slot, registration.Generation);
                return;
            case OperationKind.Receive:
                // ReceiveAsync let only one through (_receiveBusy), so none is pending here.
                _pendingReceive = op.Receive;
                _receivePending = true;
                TryCompleteReceive();
                return;
            case OperationKind.Shutdown:
                tcp?.ShutdownSend();
                return;
            case OperationKind.Close:
                if (tcp is null)
                {
                    _closed.TrySetResult();
                }
                else if (tcp.ReadableBytes > 0)
                {
                    tcp.Abort();
                }
                else
                {
                    tcp.ShutdownSend();
                }

                return;
            case OperationKind.Abort:
                tcp?.Abort();
                return;
        }
    }

    private void TryCompleteReceive()
    {
        if (!_receivePending || _tcp is not { } tcp)
        {
            return;
        }

        if (tcp.ReadableBytes > 0)
        {
            var n = tcp.Read(_pendingReceive.Span);
            _receivePending = false;
            _pendingReceive = default;
            _receive.SetResult(n);
            return;
        }

        var error = _error ?? tcp.Error;
        if (error is not null)
        {
            _receivePending = false;
            _pendingReceive = default;
            _receive.SetException(error);
            return;
        }

        if (tcp.IsEndOfStream || (tcp.State == TcpState.Closed && _closedInOrder))
        {
            _receivePending = false;
            _pendingReceive = default;
            _receive.SetResult(0);
        }
    }

    private bool _closedInOrder;

    void ITcpConnectionObserver.OnEstablished(TcpConnection connection) => _connected.TrySetResult(this);

    void ITcpConnectionObserver.OnReadable(TcpConnection connection) => TryCompleteReceive();

    void ITcpConnectionObserver.OnClosed(TcpConnection connection, TcpConnectionException? error)
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

    // ---- ISendHost: the caller's pinned memory, identified by descriptor ----

    void ISendHost.CopyTo(SendDescriptor descriptor, int offset, Span<byte> destination) =>
        _sends.Read(descriptor, offset, destination.Length).CopyTo(destination);

    PinLease ISendHost.Lease(SendDescriptor descriptor, int offset, int length) => _sends.Lease(descriptor, offset, length);

    void ISendHost.Acknowledged(SendDescriptor descriptor) => _sends.Complete(descriptor, null);

    void ISendHost.Failed(SendDescriptor descriptor, Exception error) => _sends.Complete(descriptor, error);

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
