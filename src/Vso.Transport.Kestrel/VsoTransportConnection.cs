using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel;

/// <summary>
/// One accepted TCP connection as Kestrel sees it. Output is <see cref="VsoOutputWriter"/> (the DESIGN.md §2 host
/// over pinned blocks); Input is a <see cref="Pipe"/> the engine thread fills from the connection's receive buffer,
/// and stops filling while the pipe is above its pause threshold, so that the advertised window closes
/// (RFC 9293 §3.8.6: the window is the receiver's buffer space) and the peer is held back.
/// The TcpConnection is touched on the engine thread only; the application's requests reach it as queued operations.
/// </summary>
internal sealed class VsoTransportConnection : ConnectionContext,
    IConnectionIdFeature,
    IConnectionTransportFeature,
    IConnectionItemsFeature,
    IMemoryPoolFeature,
    IConnectionLifetimeFeature,
    IConnectionEndPointFeature,
    IVsoTcpInfoFeature,
    IEngineWork,
    ITcpConnectionObserver,
    ISendHost
{
    private static long _lastId;

    private readonly NetworkStack _engine;
    private readonly PinnedBlockPool _pool;
    private readonly ILogger _log;
    private readonly ConcurrentQueue<Operation> _operations = new();
    private readonly Dictionary<int, BlockRef> _blocks = [];
    private readonly Pipe _input;
    private readonly VsoOutputWriter _output;
    private readonly CancellationTokenSource _closedSource = new();
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TcpConnection _tcp;
    private int _posted;
    private bool _readPaused;
    private bool _inputDone;
    private bool _tcpClosed;
    private int _disposed;
    private IDictionary<object, object?>? _items;

    public VsoTransportConnection(NetworkStack engine, TcpConnection tcp, PinnedBlockPool pool, VsoTransportOptions options, ILogger log)
    {
        _engine = engine;
        _tcp = tcp;
        _pool = pool;
        _log = log;
        FinOnError = options.FinOnError;
        ConnectionId = "vso-" + Interlocked.Increment(ref _lastId).ToString("x8", System.Globalization.CultureInfo.InvariantCulture);
        LocalEndPoint = new IPEndPoint(tcp.Id.LocalAddress.ToIPAddress(), tcp.Id.LocalPort);
        RemoteEndPoint = new IPEndPoint(tcp.Id.RemoteAddress.ToIPAddress(), tcp.Id.RemotePort);
        ConnectionClosed = _closedSource.Token;

        // Reader continuations run on the thread pool, never on the engine thread; the writer (engine) side only posts.
        _input = new Pipe(new PipeOptions(
            pool,
            readerScheduler: PipeScheduler.ThreadPool,
            writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: options.MaxReadBufferSize,
            resumeWriterThreshold: options.MaxReadBufferSize / 2,
            useSynchronizationContext: false));
        _output = new VsoOutputWriter(this, pool, options.MaxWriteBufferSize);
        Transport = new DuplexPipe(_input.Reader, _output);

        Features = new FeatureCollection();
        Features.Set<IConnectionIdFeature>(this);
        Features.Set<IConnectionTransportFeature>(this);
        Features.Set<IConnectionItemsFeature>(this);
        Features.Set<IMemoryPoolFeature>(this);
        Features.Set<IConnectionLifetimeFeature>(this);
        Features.Set<IConnectionEndPointFeature>(this);
        Features.Set<IVsoTcpInfoFeature>(this);

        // Engine thread (we are created in the listener's callback): from now on this object is told of the connection's life.
        tcp.Observer = this;
        tcp.SetHost(this);
        PumpInput();
    }

    public override string ConnectionId { get; set; }

    public override IFeatureCollection Features { get; }

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new ConnectionItems();
        set => _items = value;
    }

    public override IDuplexPipe Transport { get; set; }

    public MemoryPool<byte> MemoryPool => _pool;

    internal VsoOutputWriter Output => _output;

    /// <summary>Completes when the TCP connection has ended (closed in order, reset or failed).</summary>
    internal Task Ended => _ended.Task;

    public TcpConnectionInfo GetInfo() => TcpConnectionInfo.From(_tcp);

    /// <summary>
    /// Resets the connection (RFC 9293 §3.10.5: RST, pending data discarded); ConnectionClosed fires. As Kestrel's Sockets
    /// transport: with <see cref="VsoTransportOptions.FinOnError"/> the connection ends with FIN after the flushed data instead.
    /// </summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        // Kestrel passes null at times (HTTP/2 frame writer on connection close).
        _log.Aborted(ConnectionId, abortReason?.Message ?? "no reason given");
        Enqueue(new Operation(FinOnError ? OperationKind.AbortWithFin : OperationKind.Abort, null, 0, 0, abortReason));
    }

    /// <summary>RST on an application error (Abort, Output completed with an exception) unless FinOnError.</summary>
    internal bool FinOnError { get; }

    /// <summary>
    /// Ends the connection for the application: FIN after the written data (or RST if received bytes were left unread,
    /// RFC 2525 §2.17), then waits, bounded, until the peer acknowledged what was sent, so that a graceful shutdown
    /// drains. Blocks still unacknowledged afterwards return to the pool when the stack acknowledges or fails them.
    /// </summary>
    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            await base.DisposeAsync().ConfigureAwait(false);
            return;
        }

        _output.Complete();
        await _input.Reader.CompleteAsync().ConfigureAwait(false);
        Enqueue(new Operation(OperationKind.Close, null, 0, 0, null));

        var watch = Stopwatch.StartNew();
        while (!_ended.Task.IsCompleted && _output.InFlightBytes > 0 && watch.Elapsed < DrainTimeout)
        {
            await Task.WhenAny(_ended.Task, Task.Delay(10)).ConfigureAwait(false);
        }

        if (!_ended.Task.IsCompleted && _output.InFlightBytes > 0)
        {
            _log.DrainTimedOut(ConnectionId, _output.InFlightBytes, watch.ElapsedMilliseconds);
        }

        FireClosed();
        await base.DisposeAsync().ConfigureAwait(false);
    }

    internal static TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(5);

    // ---- From the writer (application thread) ----

    internal void PostSend(BlockRef block, int start, int length) =>
        Enqueue(new Operation(OperationKind.Send, block, start, length, null));

    internal void PostShutdownSend() => Enqueue(new Operation(OperationKind.ShutdownSend, null, 0, 0, null));

    private void Enqueue(in Operation operation)
    {
        _operations.Enqueue(operation);
        if (Interlocked.Exchange(ref _posted, 1) == 0)
        {
            _engine.Post(this);
        }
    }

    private void FireClosed()
    {
        if (_closedSource.IsCancellationRequested)
        {
            return;
        }

        // Never run the application's callbacks on the engine thread.
        ThreadPool.UnsafeQueueUserWorkItem(static state =>
        {
            try
            {
                state._closedSource.Cancel();
            }
            catch (Exception ex)
            {
                // An application callback threw: log it, never let it take the process down.
                state._log.ClosedCallbackFailed(state.ConnectionId, ex);
            }
        }, this, preferLocal: false);
    }

    // ---- Engine thread ----

    TcpConnection? IEngineWork.Connection => _tcp;

    void IEngineWork.Execute()
    {
        Volatile.Write(ref _posted, 0);

        // Flushes that queued up since the last turn and continue each other in one block (Kestrel answering
        // pipelined requests one flush each) become one descriptor: fewer, fuller segments.
        var pending = default(Operation);
        while (_operations.TryDequeue(out var op))
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

        _engine.Tcp.AfterEvent(_tcp);
    }

    private void Apply(in Operation op)
    {
        switch (op.Kind)
        {
            case OperationKind.Send:
                var block = op.Block!;
                _blocks[block.Block.Id] = block;

                // HostToken/HostTag = block id/generation: CopyTo and Lease validate them against the pool.
                _tcp.Enqueue(block.Block.Address + op.Start, op.Length, block.Block.Id, block.Block.Generation);
                return;
            case OperationKind.ShutdownSend:
                _tcp.ShutdownSend();
                return;
            case OperationKind.ResumeRead:
                _readPaused = false;
                PumpInput();
                return;
            case OperationKind.Abort:
                CompleteInput(op.Error);
                _tcp.Abort();
                return;
            case OperationKind.AbortWithFin:
                CompleteInput(op.Error);
                _tcp.ShutdownSend();
                return;
            case OperationKind.Close:
                CompleteInput(null);
                if (_tcp.State != TcpState.Closed && _tcp.ReadableBytes > 0)
                {
                    // RFC 2525 §2.17: closing with unread received data resets, so the peer knows it was lost.
                    _tcp.Abort();
                }
                else
                {
                    _tcp.ShutdownSend();
                }

                return;
        }
    }

    /// <summary>Moves received bytes into the input pipe until the connection's buffer is empty or the pipe is full.</summary>
    private void PumpInput()
    {
        if (_readPaused)
        {
            return;
        }

        if (_inputDone)
        {
            // The application stopped reading: discard, so the window stays open and the connection can finish.
            Span<byte> sink = stackalloc byte[2048];
            while (_tcp.ReadableBytes > 0 && _tcp.Read(sink) > 0)
            {
            }

            return;
        }

        var writer = _input.Writer;
        var moved = 0;
        while (_tcp.ReadableBytes > 0)
        {
            var span = writer.GetSpan(Math.Min(_tcp.ReadableBytes, _pool.BlockSize));
            var n = _tcp.Read(span);
            if (n == 0)
            {
                break;
            }

            writer.Advance(n);
            moved += n;
        }

        if (moved > 0)
        {
            var flush = writer.FlushAsync();
            if (flush.IsCompleted)
            {
                if (flush.Result.IsCompleted)
                {
                    CompleteInput(null);
                    return;
                }
            }
            else
            {
                // Above the pause threshold: stop reading; the receive buffer fills and the window closes.
                _readPaused = true;
                _ = ResumeWhenDrained(flush);
                return;
            }
        }

        if (_tcp.IsEndOfStream)
        {
            // The peer's FIN: end of the input stream.
            CompleteInput(null);
        }
    }

    private async Task ResumeWhenDrained(ValueTask<FlushResult> flush)
    {
        FlushResult result;
        try
        {
            result = await flush.ConfigureAwait(false);
        }
        catch (Exception)
        {
            result = new FlushResult(false, true);
        }

        if (result.IsCompleted)
        {
            _inputDone = true;
        }

        Enqueue(new Operation(OperationKind.ResumeRead, null, 0, 0, null));
    }

    private void CompleteInput(Exception? error)
    {
        if (_inputDone)
        {
            return;
        }

        _inputDone = true;
        _input.Writer.Complete(error);
    }

    void ITcpConnectionObserver.OnEstablished(TcpConnection connection)
    {
    }

    void ITcpConnectionObserver.OnReadable(TcpConnection connection) => PumpInput();

    void ITcpConnectionObserver.OnClosed(TcpConnection connection, TcpConnectionException? error)
    {
        if (_tcpClosed)
        {
            return;
        }

        _tcpClosed = true;
        _log.Closed(ConnectionId, error?.Message ?? "closed in order");
        if (!_readPaused)
        {
            PumpInput();
        }

        // A reset or failure ends the input with an error Kestrel knows (it logs resets at debug level).
        CompleteInput(error is null ? null : new ConnectionResetException(error.Message, error));
        _output.OnConnectionClosed();
        FireClosed();
        _ended.TrySetResult();
    }

    // ---- ISendHost: the pinned blocks, identified by descriptor (DESIGN.md §2) ----

    unsafe void ISendHost.CopyTo(SendDescriptor descriptor, int offset, Span<byte> destination)
    {
        // Validate refuses a descriptor whose block was released (StaleDescriptorException) before any byte is read.
        var address = descriptor.Address + offset;
        _ = _pool.Validate((int)descriptor.HostToken, descriptor.HostTag, address, destination.Length);
        new ReadOnlySpan<byte>((void*)address, destination.Length).CopyTo(destination);
    }

    PinLease ISendHost.Lease(SendDescriptor descriptor, int offset, int length) =>
        _pool.Lease((int)descriptor.HostToken, descriptor.HostTag, descriptor.Address + offset, length);

    void ISendHost.Acknowledged(SendDescriptor descriptor) => Release(descriptor);

    void ISendHost.Failed(SendDescriptor descriptor, Exception error) => Release(descriptor);

    private void Release(SendDescriptor descriptor)
    {
        var id = (int)descriptor.HostToken;
        if (_blocks.TryGetValue(id, out var block) && block.Block.Generation == descriptor.HostTag)
        {
            if (block.Release())
            {
                _blocks.Remove(id);
            }
        }

        _output.OnReleased(descriptor.Length);
    }

    private enum OperationKind : byte
    {
        Send,
        ShutdownSend,
        ResumeRead,
        Abort,
        AbortWithFin,
        Close,
    }

    private readonly record struct Operation(OperationKind Kind, BlockRef? Block, int Start, int Length, Exception? Error);

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class ConnectionItems : Dictionary<object, object?>
    {
    }
}
