using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
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
/// and no frame still reads it. Operations may come from any thread: most are posted and the engine thread applies
/// them in order; the synchronous ones (<see cref="TrySend"/>, <see cref="TryReceive"/>, <see cref="Peek"/>, the
/// readable state) take the engine's gate and act between two of its turns, after what was posted before them.
/// Each connection has its own copy of the stack's <see cref="TcpSettings"/>, taken when it opens; its setters
/// (<see cref="NoDelay"/>, <see cref="ReceiveBufferSize"/>, ...) change that copy only.
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
    private readonly Lock _optionsLock = new();
    private TcpSettings _options;           // the application's view of the connection's settings (what the getters return)
    private readonly TcpSettings? _openSettings; // active open: the engine's copy, handed to the connection at Connect
    private Memory<byte> _pendingReceive;
    private bool _receivePending;           // engine thread: a receive waits for bytes, the end of stream or an error
    private int _receiveBusy;               // 1 from ReceiveAsync until its result is taken (GetResult)
    private ManualResetValueTaskSourceCore<int> _receive; // the one reusable completion of ReceiveAsync
    private volatile bool _receiveShutdown;
    private TcpConnectionException? _error;
    private bool _closedInOrder;
    private CancellationTokenRegistration _connectCancellation;

    // The send limit (engine thread): sends held back while the queue is at the limit, and who waits for room.
    private readonly Queue<Operation> _held = new();
    private long _heldBytes;
    private long _queuedBytes;              // of sends handed to TCP and not yet wholly acknowledged or failed
    private int _sendLimit;
    private int _notSentLowWatermark;
    private List<TaskCompletionSource>? _writableWaiters;
    private TaskCompletionSource? _lingerClose;

    /// <summary>
    /// An accepted connection (<paramref name="accepted"/>, engine thread) or one to connect (null) with its own
    /// <paramref name="settings"/>, on <paramref name="shard"/> (null: the stack's next, round robin).
    /// </summary>
    internal VsoConnection(VsoStack stack, VsoConnectionEndpoint? accepted, TcpSettings? settings = null, NetworkStack? shard = null)
    {
        _stack = stack;
        _engine = new EngineSide(this);
        _sends = new SendRegistrations(stack.PinAccounting.Pinner);
        _connected = stack.NewCompletion<VsoConnection>();
        _closed = stack.NewCompletion();
        _receive.RunContinuationsAsynchronously = !stack.Options.InlineContinuations;
        if (accepted?.Tcp is { } tcp)
        {
            _options = tcp.Settings.Clone();
        }
        else
        {
            _options = (settings ?? stack.Options.Tcp).Clone();
            _openSettings = _options.Clone();
        }

        _sendLimit = _options.SendBufferSize;
        _notSentLowWatermark = _options.NotSentLowWatermark;
        _endpoint = accepted ?? stack.CreateEndpoint(shard);
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

    /// <summary>A snapshot of the connection's TCP state, taken between two turns of the engine.</summary>
    public TcpConnectionInfo GetInfo() => _endpoint.GetInfo();

    internal TcpConnection? Tcp => _endpoint.Tcp;

    internal VsoConnectionEndpoint Endpoint => _endpoint;

    /// <summary>The send host over the caller's pinned memory (tests hand it stale ranges).</summary>
    internal IVsoSendHost SendHost => _engine;

    // ---- Per-connection options (socket options); each setter checks its value and throws ArgumentException naming it ----

    /// <summary>Nagle's algorithm off (TCP_NODELAY): small segments go at once; what Nagle held goes when it is set.</summary>
    public bool NoDelay
    {
        get => !ReadOptions().Nagle;
        set => Configure(value, static (s, v) => s.Nagle = !v);
    }

    /// <summary>The receive buffer, the largest window advertised (SO_RCVBUF). Never shrinks a window already offered.</summary>
    public int ReceiveBufferSize
    {
        get => ReadOptions().ReceiveBufferSize;
        set => Configure(value, static (s, v) => s.ReceiveBufferSize = v);
    }

    /// <summary>The send limit (SO_SNDBUF): queued and unacknowledged bytes above which sends wait (<see cref="TcpSettings.SendBufferSize"/>); 0 for none.</summary>
    public int SendBufferSize
    {
        get => ReadOptions().SendBufferSize;
        set => Configure(value, static (s, v) => s.SendBufferSize = v);
    }

    /// <summary>Keepalive probes on an idle connection (SO_KEEPALIVE, RFC 9293 §3.8.4).</summary>
    public bool KeepAlive
    {
        get => ReadOptions().Keepalive;
        set => Configure(value, static (s, v) => s.Keepalive = v);
    }

    /// <summary>Idle time before the first keepalive probe (TCP_KEEPIDLE), counted from the peer's last segment.</summary>
    public TimeSpan KeepAliveIdle
    {
        get => ReadOptions().KeepaliveIdle;
        set => Configure(value, static (s, v) => s.KeepaliveIdle = v);
    }

    /// <summary>Time between unanswered keepalive probes (TCP_KEEPINTVL).</summary>
    public TimeSpan KeepAliveInterval
    {
        get => ReadOptions().KeepaliveInterval;
        set => Configure(value, static (s, v) => s.KeepaliveInterval = v);
    }

    /// <summary>Unanswered keepalive probes before the connection fails (TCP_KEEPCNT).</summary>
    public int KeepAliveProbes
    {
        get => ReadOptions().KeepaliveProbes;
        set => Configure(value, static (s, v) => s.KeepaliveProbes = v);
    }

    /// <summary>Fail the connection when sent data stays unacknowledged this long (TCP_USER_TIMEOUT, RFC 5482); zero: off.</summary>
    public TimeSpan UserTimeout
    {
        get => ReadOptions().UserTimeout;
        set => Configure(value, static (s, v) => s.UserTimeout = v);
    }

    /// <summary>How <see cref="CloseAsync"/> ends the connection (SO_LINGER, <see cref="TcpSettings.Linger"/>): null, zero (RST) or a time to wait.</summary>
    public TimeSpan? Linger
    {
        get => ReadOptions().Linger;
        set => Configure(value, static (s, v) => s.Linger = v);
    }

    /// <summary>The largest segment (TCP_MAXSEG); zero: the path decides. Before the SYN only through <see cref="VsoStack.ConnectAsync(IPEndPoint, IPEndPoint?, TcpSettings?, CancellationToken)"/>.</summary>
    public int MssClamp
    {
        get => ReadOptions().MssClamp;
        set => Configure(value, static (s, v) => s.MssClamp = v);
    }

    /// <summary>Writable only while fewer bytes than this wait unsent (TCP_NOTSENT_LOWAT); zero: off. See <see cref="WaitWritableAsync"/>.</summary>
    public int NotSentLowWatermark
    {
        get => ReadOptions().NotSentLowWatermark;
        set => Configure(value, static (s, v) => s.NotSentLowWatermark = v);
    }

    private TcpSettings ReadOptions()
    {
        lock (_optionsLock)
        {
            return _options;
        }
    }

    /// <summary>Copy, change, check, then post the copy: the engine applies it after what was posted before.</summary>
    private void Configure<T>(T value, Action<TcpSettings, T> change)
    {
        lock (_optionsLock)
        {
            var next = _options.Clone();
            change(next, value);
            next.ValidateConnectionKeys();
            _options = next;
            Enqueue(new Operation(OperationKind.Configure, default, default, null) { Settings = next.Clone() });
        }
    }

    // ---- Sending ----

    /// <summary>
    /// Sends <paramref name="data"/> without copying it: the memory stays pinned (and mlocked when
    /// <see cref="VsoStackOptions.Mlock"/> is set) and must not change until the task completes, which happens
    /// when the peer acknowledged all of it and no frame still reads it. While the send queue is at
    /// <see cref="SendBufferSize"/> the send waits (pinned) and is queued whole once acknowledgments make room.
    /// Fails if the connection cannot deliver, or with <see cref="MemoryLockException"/> if the memory could not be locked.
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
    /// Sends <paramref name="data"/> as <see cref="SendAsync"/> does if the connection is writable now (see
    /// <see cref="WaitWritableAsync"/>), else refuses it and returns false; <paramref name="completion"/> completes as
    /// <see cref="SendAsync"/>'s task. Whatever was posted before goes first.
    /// </summary>
    public bool TrySend(ReadOnlyMemory<byte> data, [NotNullWhen(true)] out Task? completion)
    {
        TaskCompletionSource send;
        lock (_endpoint.Shard.Gate)
        {
            var caughtUp = CatchUp();
            if (_held.Count > 0 || !IsWritable())
            {
                // Held operations go first, in order; a send could not overtake them.
                completion = null;
                return false;
            }

            send = _stack.NewCompletion();
            if (data.IsEmpty)
            {
                send.SetResult();
            }
            else if (caughtUp)
            {
                SendNow(data, send);
            }
            else
            {
                // Inside a turn the sender may be in the middle of its queue (an ACK being processed): taken, and queued next turn.
                Enqueue(new Operation(OperationKind.Send, data, default, send));
            }
        }

        _endpoint.RequestTurn(); // the engine sends it in its next turn
        completion = send.Task;
        return true;
    }

    /// <summary>Bytes queued (or waiting to be) and not yet acknowledged: what <see cref="SendBufferSize"/> bounds.</summary>
    public long SendQueueBytes
    {
        get
        {
            lock (_endpoint.Shard.Gate)
            {
                CatchUp();
                return _heldBytes + QueuedNow;
            }
        }
    }

    /// <summary>Queued bytes not sent even once yet (what <see cref="NotSentLowWatermark"/> bounds).</summary>
    public long NotSentBytes
    {
        get
        {
            lock (_endpoint.Shard.Gate)
            {
                CatchUp();
                return NotSentNow;
            }
        }
    }

    /// <summary>
    /// Completes when the connection is writable: fewer than <see cref="SendBufferSize"/> bytes queued and unacknowledged
    /// and, when <see cref="NotSentLowWatermark"/> is set, fewer than it not yet sent (poll's POLLOUT with
    /// TCP_NOTSENT_LOWAT). Fails with the connection's error once it has failed.
    /// </summary>
    public Task WaitWritableAsync(CancellationToken cancellationToken = default)
    {
        var waiter = _stack.NewCompletion();
        if (cancellationToken.CanBeCanceled)
        {
            var registration = cancellationToken.UnsafeRegister(static (state, token) => ((TaskCompletionSource)state!).TrySetCanceled(token), waiter);
            _ = waiter.Task.ContinueWith(static (_, state) => ((CancellationTokenRegistration)state!).Dispose(), registration, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        Enqueue(new Operation(OperationKind.WaitWritable, default, default, waiter));
        return waiter.Task;
    }

    // ---- Receiving ----

    /// <summary>
    /// Receives into <paramref name="buffer"/>; 0 means the peer closed its side (or receiving was shut down). One
    /// receive at a time: await it (once) before the next. Completes synchronously when bytes, the end of stream or an
    /// error are already there and the engine is between turns (not when called from inside a turn, by a continuation
    /// run inline on the engine thread: that receive is taken in the next turn). Allocates nothing: the ValueTask is
    /// backed by one reusable completion of the connection.
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
        var gate = _endpoint.Shard.Gate;
        if (gate.IsHeldByCurrentThread || !gate.TryEnter())
        {
            // The engine is in a turn: do not wait for it, it takes the receive after what was posted before. Called from
            // inside a turn (a continuation run inline), the receive is posted too: it is taken after the frames of this
            // turn, not in the middle of them, as it always was.
            Enqueue(new Operation(OperationKind.Receive, default, buffer, null));
            return new ValueTask<int>(_engine, version);
        }

        int n;
        TcpConnectionException? error;
        try
        {
            ApplyOperations();
            if (!TakeNow(buffer.Span, out n, out error))
            {
                _pendingReceive = buffer;
                _receivePending = true;
                return new ValueTask<int>(_engine, version);
            }
        }
        finally
        {
            gate.Exit();
        }

        Volatile.Write(ref _receiveBusy, 0);
        return Completed(n, error);
    }

    private ValueTask<int> Completed(int n, TcpConnectionException? error)
    {
        if (error is not null)
        {
            return ValueTask.FromException<int>(error);
        }

        if (n > 0)
        {
            _endpoint.RequestTurn(); // a window update the read made due goes out in the engine's next turn
        }

        return new ValueTask<int>(n);
    }

    /// <summary>
    /// Receives what is there now into <paramref name="destination"/>, without waiting: true with the bytes read, or with
    /// 0 at the end of the stream; false when nothing is there yet. Throws the connection's error once it failed, and
    /// <see cref="InvalidOperationException"/> while a <see cref="ReceiveAsync"/> is pending.
    /// </summary>
    public bool TryReceive(Span<byte> destination, out int bytesReceived)
    {
        int n;
        TcpConnectionException? error;
        lock (_endpoint.Shard.Gate)
        {
            CatchUp();
            if (_receivePending || Volatile.Read(ref _receiveBusy) != 0)
            {
                throw new InvalidOperationException("A receive is pending on this connection; await it before receiving again.");
            }

            if (!TakeNow(destination, out n, out error))
            {
                bytesReceived = 0;
                return false;
            }
        }

        if (error is not null)
        {
            throw error;
        }

        if (n > 0)
        {
            _endpoint.RequestTurn();
        }

        bytesReceived = n;
        return true;
    }

    /// <summary>Copies bytes readable now into <paramref name="destination"/> without consuming them (MSG_PEEK); returns how many.</summary>
    public int Peek(Span<byte> destination)
    {
        lock (_endpoint.Shard.Gate)
        {
            CatchUp();
            return _receiveShutdown ? 0 : _endpoint.Tcp?.Receiver.Peek(destination) ?? 0;
        }
    }

    /// <summary>In-order bytes received and not yet read (FIONREAD).</summary>
    public int BytesAvailable
    {
        get
        {
            lock (_endpoint.Shard.Gate)
            {
                CatchUp();
                return _receiveShutdown ? 0 : _endpoint.ReadableBytes;
            }
        }
    }

    /// <summary>A receive would return 0 now: the peer closed its side and everything before its FIN was read, or receiving was shut down.</summary>
    public bool IsEndOfStream
    {
        get
        {
            lock (_endpoint.Shard.Gate)
            {
                CatchUp();
                return _error is null && _endpoint.Error is null
                    && (_receiveShutdown || _endpoint.IsEndOfStream || (_endpoint.IsOpen && _endpoint.State == TcpState.Closed && _closedInOrder));
            }
        }
    }

    /// <summary>Why the connection failed (SO_ERROR), readable without a receive; null while it works or after an orderly close.</summary>
    public TcpConnectionException? Error
    {
        get
        {
            lock (_endpoint.Shard.Gate)
            {
                CatchUp();
                return _error ?? _endpoint.Error;
            }
        }
    }

    // ---- Closing ----

    /// <summary>Sends FIN after everything queued (half-close); receiving goes on.</summary>
    public void ShutdownSend() => Enqueue(new Operation(OperationKind.Shutdown, default, default, null));

    /// <summary>
    /// Shuts down the receiving half (SHUT_RD): receives return 0 from now on. Unread bytes are dropped and, like any data
    /// the peer sends later, answered with RST (RFC 1122 §4.2.2.13: the peer learns its data was lost), as Windows does;
    /// Linux instead acknowledges and drops it. Sending goes on until then.
    /// </summary>
    public void ShutdownReceive()
    {
        _receiveShutdown = true;
        Enqueue(new Operation(OperationKind.ShutdownReceive, default, default, null));
    }

    /// <summary>
    /// Closes: FIN after queued data, or RST if received data was left unread (RFC 2525 §2.17). By <see cref="Linger"/>:
    /// null completes when the connection has ended for the application; zero resets it at once; a positive time
    /// completes once the peer acknowledged everything (FIN included) and fails with <see cref="TcpError.TimedOut"/>
    /// when the time runs out first, the connection then reset.
    /// </summary>
    public Task CloseAsync()
    {
        var linger = Linger;
        if (linger is { } time && time > TimeSpan.Zero)
        {
            var lingering = _stack.NewCompletion();
            Enqueue(new Operation(OperationKind.Close, default, default, lingering) { Linger = time, Lingers = true });
            return lingering.Task;
        }

        Enqueue(new Operation(OperationKind.Close, default, default, null) { Linger = TimeSpan.Zero, Lingers = linger is not null });
        return Closed;
    }

    /// <summary>Resets the connection (RST); pending operations fail.</summary>
    public void Abort() => Enqueue(new Operation(OperationKind.Abort, default, default, null));

    internal void PostConnect(Ipv4Address remote, ushort port, ushort localPort, CancellationToken cancellationToken)
    {
        Enqueue(new Operation(OperationKind.Connect, default, default, null) { Remote = remote, Port = port, LocalPort = localPort });
        if (cancellationToken.CanBeCanceled)
        {
            _connectCancellation = cancellationToken.UnsafeRegister(
                static (state, token) => ((VsoConnection)state!).Enqueue(new Operation(OperationKind.CancelConnect, default, default, null) { Token = token }),
                this);
        }
    }

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

    // ---- Engine thread (or the gate held) ----

    private void OnTurn()
    {
        ReleaseHeld();
        ApplyOperations();
        NotifyWaiters();
    }

    /// <summary>
    /// With the gate held: applies what was posted before, so that a synchronous call sees it, and returns true; false,
    /// leaving it for the next turn as always, when called from inside a turn (a continuation run inline on the engine
    /// thread), where the engine may be in the middle of this connection's work.
    /// </summary>
    private bool CatchUp()
    {
        if (_endpoint.Shard.InTurn)
        {
            return false;
        }

        ApplyOperations();
        return true;
    }

    private void ApplyOperations()
    {
        while (_operations.TryDequeue(out var op))
        {
            Apply(op);
        }
    }

    private void Apply(in Operation op)
    {
        switch (op.Kind)
        {
            case OperationKind.Connect:
                try
                {
                    _endpoint.Connect(op.Remote, op.Port, _openSettings, op.LocalPort);
                }
                catch (InvalidOperationException ex)
                {
                    _connected.TrySetException(ex);
                }

                return;
            case OperationKind.CancelConnect:
                // RFC 9293 §3.10.5 ABORT: in SYN-SENT the TCB goes without a word; a SYN-ACK that still comes then meets
                // no connection and gets RST (§3.10.7.1), which is the RST the peer needs. Later states send RST.
                if (!_connected.Task.IsCompleted && _connected.TrySetCanceled(op.Token))
                {
                    _endpoint.Abort();
                }

                return;
            case OperationKind.Configure:
                ApplySettings(op.Settings!);
                return;
        }

        if (_held.Count > 0 && op.Kind is OperationKind.Send or OperationKind.Shutdown or OperationKind.Close)
        {
            // Behind sends held at the limit: a FIN must not overtake them.
            Hold(op);
            return;
        }

        Execute(op);
    }

    private void Hold(in Operation op)
    {
        _held.Enqueue(op);
        _heldBytes += op.Send.Length;
        Watch();
    }

    private void Execute(in Operation op)
    {
        var open = _endpoint.IsOpen;
        var error = _error ?? _endpoint.Error;
        switch (op.Kind)
        {
            case OperationKind.Send:
                if (_sendLimit != 0 && QueuedNow >= _sendLimit)
                {
                    // At the send limit: the send waits, pinned by nobody yet, and goes whole once acknowledgments make room.
                    Hold(op);
                    return;
                }

                SendNow(op.Send, op.SendCompletion!);
                return;
            case OperationKind.WaitWritable:
                if (!open || error is not null)
                {
                    op.SendCompletion!.TrySetException(error ?? new TcpConnectionException(TcpError.Aborted, "The connection is not open."));
                }
                else if (IsWritable())
                {
                    op.SendCompletion!.TrySetResult();
                }
                else
                {
                    (_writableWaiters ??= []).Add(op.SendCompletion!);
                    Watch();
                }

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
            case OperationKind.ShutdownReceive:
                _endpoint.Tcp?.ShutdownReceive();
                TryCompleteReceive();
                return;
            case OperationKind.Close:
                Close(op, open);
                return;
            case OperationKind.Abort:
                _endpoint.Abort();
                return;
        }
    }

    private void Close(in Operation op, bool open)
    {
        if (!open)
        {
            _closed.TrySetResult();
            op.SendCompletion?.TrySetResult();
            return;
        }

        var tcp = _endpoint.Tcp!;
        if (!op.Lingers || (tcp.State != TcpState.Closed && tcp.ReadableBytes > 0))
        {
            _endpoint.Close(); // FIN, or RST over unread data (RFC 2525 §2.17)
        }
        else
        {
            tcp.CloseLingering(op.Linger);
        }

        if (op.SendCompletion is { } lingering)
        {
            if (tcp.State == TcpState.Closed || _closed.Task.IsCompleted)
            {
                CompleteLinger(lingering, _error ?? tcp.Error);
            }
            else
            {
                _lingerClose = lingering;
                Watch();
            }
        }
    }

    private static void CompleteLinger(TaskCompletionSource lingering, TcpConnectionException? error)
    {
        if (error is null)
        {
            lingering.TrySetResult();
        }
        else
        {
            lingering.TrySetException(error);
        }
    }

    private void ApplySettings(TcpSettings settings)
    {
        _endpoint.Tcp?.Reconfigure(settings);
        _sendLimit = settings.SendBufferSize;
        _notSentLowWatermark = settings.NotSentLowWatermark;
        ReleaseHeld();
        NotifyWaiters();
    }

    /// <summary>Registers a pin and queues its descriptor; the queue counts it until acknowledged or failed.</summary>
    private void SendNow(ReadOnlyMemory<byte> data, TaskCompletionSource completion)
    {
        var error = _error ?? _endpoint.Error;
        if (!_endpoint.IsOpen || error is not null)
        {
            completion.TrySetException(error ?? new TcpConnectionException(TcpError.Aborted, "The connection is not open."));
            return;
        }

        (int Slot, long Generation, nint Address) registration;
        try
        {
            registration = _sends.Register(data, completion);
        }
        catch (MemoryLockException ex)
        {
            // mlock refused (RLIMIT_MEMLOCK): this send fails, the connection goes on.
            completion.TrySetException(ex);
            return;
        }

        _queuedBytes += data.Length; // before Enqueue: a refusal calls Failed at once
        _endpoint.Enqueue(registration.Address, data.Length, registration.Slot, registration.Generation);
    }

    /// <summary>Held sends go, in order, while the queue is below the limit; a shutdown or close held behind them follows.</summary>
    private void ReleaseHeld()
    {
        while (_held.TryPeek(out var op))
        {
            if (op.Kind == OperationKind.Send && _sendLimit != 0 && QueuedNow >= _sendLimit)
            {
                return;
            }

            _held.Dequeue();
            _heldBytes -= op.Send.Length;
            Execute(op);
        }
    }

    private void OnSendDone(int length)
    {
        _queuedBytes -= length;
        if (_held.Count > 0 || _writableWaiters is { Count: > 0 })
        {
            // Called from inside the sender's ACK processing: the held sends go in a turn of their own.
            _endpoint.RequestTurn();
        }
    }

    /// <summary>
    /// Bytes TCP holds unacknowledged: exact (a partly acknowledged send counts only its rest) while the connection is
    /// open, and 0 once every send it held has failed or completed.
    /// </summary>
    private long QueuedNow => Math.Min(_queuedBytes, _endpoint.Tcp?.Sender.QueuedBytes ?? 0);

    private long NotSentNow => _heldBytes + (_endpoint.Tcp?.Sender.NotSentBytes ?? 0);

    private bool IsWritable() =>
        (_sendLimit == 0 || _heldBytes + QueuedNow < _sendLimit)
        && (_notSentLowWatermark == 0 || NotSentNow < _notSentLowWatermark);

    /// <summary>Hear of the send side's progress (new data sent, data or FIN acknowledged) while someone waits on it.</summary>
    private void Watch()
    {
        if (_endpoint.Tcp is { } tcp)
        {
            tcp.SendWatcher = _engine;
        }
    }

    private void NotifyWaiters()
    {
        if (_writableWaiters is { Count: > 0 } waiters && IsWritable())
        {
            foreach (var waiter in waiters)
            {
                waiter.TrySetResult();
            }

            waiters.Clear();
        }

        if (_lingerClose is { } lingering && _endpoint.State is TcpState.FinWait2 or TcpState.TimeWait)
        {
            // Our FIN, and so every byte before it, was acknowledged: the lingering close is done.
            _lingerClose = null;
            lingering.TrySetResult();
        }

        if (_writableWaiters is not { Count: > 0 } && _lingerClose is null && _held.Count == 0 && _endpoint.Tcp is { } tcp)
        {
            tcp.SendWatcher = null;
        }
    }

    /// <summary>Bytes, the end of the stream or the error, if one is there now (engine thread or the gate held).</summary>
    private bool TakeNow(Span<byte> destination, out int n, out TcpConnectionException? error)
    {
        n = 0;
        error = null;
        if (!_endpoint.IsOpen)
        {
            return false;
        }

        if (!_receiveShutdown && _endpoint.ReadableBytes > 0)
        {
            n = _endpoint.Read(destination);
            return true;
        }

        error = _error ?? _endpoint.Error;
        return error is not null
            || _receiveShutdown
            || _endpoint.IsEndOfStream
            || (_endpoint.State == TcpState.Closed && _closedInOrder);
    }

    private void TryCompleteReceive()
    {
        if (!_receivePending || !TakeNow(_pendingReceive.Span, out var n, out var error))
        {
            return;
        }

        _receivePending = false;
        _pendingReceive = default;
        if (error is not null)
        {
            _receive.SetException(error);
        }
        else
        {
            _receive.SetResult(n);
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

        _connectCancellation.Dispose();
        var failure = _error ?? new TcpConnectionException(TcpError.Aborted, "The connection closed before the send could be queued.");
        while (_held.TryDequeue(out var held))
        {
            if (held.Kind == OperationKind.Send)
            {
                held.SendCompletion!.TrySetException(failure);
            }
            else if (held.SendCompletion is { } heldClose)
            {
                CompleteLinger(heldClose, _error);
            }
        }

        _heldBytes = 0;
        if (_writableWaiters is { Count: > 0 } waiters)
        {
            foreach (var waiter in waiters)
            {
                waiter.TrySetException(failure);
            }

            waiters.Clear();
        }

        if (_lingerClose is { } lingering)
        {
            _lingerClose = null;
            CompleteLinger(lingering, _error);
        }

        TryCompleteReceive();
        _closed.TrySetResult();
    }

    /// <summary>
    /// The connection's engine-side interfaces: the endpoint's observer, the send host over the caller's pinned memory
    /// (identified by descriptor), the send side's watcher and the completion behind <see cref="ReceiveAsync"/>. Private,
    /// so that an application cannot call these engine-thread members.
    /// </summary>
    private sealed class EngineSide(VsoConnection connection) : IVsoEndpointObserver, IVsoSendHost, IValueTaskSource<int>, ITcpSendWatcher
    {
        void IVsoEndpointObserver.OnTurn() => connection.OnTurn();

        void IVsoEndpointObserver.OnEstablished()
        {
            connection._connectCancellation.Dispose();
            connection._connected.TrySetResult(connection);
        }

        void IVsoEndpointObserver.OnReadable() => connection.TryCompleteReceive();

        void IVsoEndpointObserver.OnClosed(TcpConnectionException? error) => connection.OnClosed(error);

        void IVsoSendHost.CopyTo(VsoSendRange range, int offset, Span<byte> destination) =>
            connection._sends.Read(range, offset, destination.Length).CopyTo(destination);

        PinLease IVsoSendHost.Lease(VsoSendRange range, int offset, int length) => connection._sends.Lease(range, offset, length);

        void IVsoSendHost.Acknowledged(VsoSendRange range)
        {
            connection._sends.Complete(range, null);
            connection.OnSendDone(range.Length);
        }

        void IVsoSendHost.Failed(VsoSendRange range, Exception error)
        {
            connection._sends.Complete(range, error);
            connection.OnSendDone(range.Length);
        }

        // New data left or our FIN was acknowledged, from inside the engine's output: the waiters are looked at in a turn.
        void ITcpSendWatcher.OnSendProgress() => connection._endpoint.RequestTurn();

        int IValueTaskSource<int>.GetResult(short token) => connection.TakeReceiveResult(token);

        ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => connection._receive.GetStatus(token);

        void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            connection._receive.OnCompleted(continuation, state, token, flags);
    }

    private enum OperationKind : byte
    {
        Connect,
        CancelConnect,
        Configure,
        Send,
        WaitWritable,
        Receive,
        Shutdown,
        ShutdownReceive,
        Close,
        Abort,
    }

    /// <summary>One posted operation; <see cref="SendCompletion"/> is also the waiter of WaitWritable and the lingering Close.</summary>
    private readonly record struct Operation(OperationKind Kind, ReadOnlyMemory<byte> Send, Memory<byte> Receive, TaskCompletionSource? SendCompletion)
    {
        public Ipv4Address Remote { get; init; }

        public ushort Port { get; init; }

        public ushort LocalPort { get; init; }

        public TcpSettings? Settings { get; init; }

        public TimeSpan Linger { get; init; }

        public bool Lingers { get; init; }

        public CancellationToken Token { get; init; }
    }
}
