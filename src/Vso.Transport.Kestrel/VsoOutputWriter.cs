using System.IO.Pipelines;
using System.Threading.Tasks.Sources;
using Microsoft.AspNetCore.Connections;

namespace Vso.Transport.Kestrel;

/// <summary>
/// <c>Transport.Output</c>, the writer over pinned blocks. Kestrel writes into blocks of the pinned pool; FlushAsync queues
/// each written block range on the connection's endpoint (address, length, block class and id, generation), so the sender's
/// descriptor chain is the retransmission queue and no byte is copied before it goes on the wire; the bytes' host is
/// <see cref="PinnedBlockSendHost"/>, which gives the writer its credit back. A block returns to the pool when the
/// writer has moved past it and every range of it is acknowledged (or failed).
/// Backpressure counts flushed bytes that are unsent or unacknowledged: FlushAsync completes once they are below
/// <see cref="PauseThreshold"/>, or, if it had to wait, once they fell below <see cref="ResumeThreshold"/>.
/// A writer that fills whole blocks is streaming: each block it fills doubles the size of the next, up to one
/// super-segment (<see cref="MaxStreamingBlockBytes"/>), so a megabyte costs a few rents, leases and descriptors instead of
/// 256, and Kestrel a few Advance calls; once everything it sent is acknowledged it starts again at the pool's block size.
/// Single writer (Kestrel's contract); acknowledgments arrive on the engine thread.
/// </summary>
internal sealed class VsoOutputWriter : PipeWriter
{
    /// <summary>The largest block a streaming writer rents: the payload of one 64 KiB super-segment.</summary>
    internal const int MaxStreamingBlockBytes = 64 * 1024;

    private readonly ConnectionOperations _operations;
    private readonly PinnedBlockClasses _blocks;
    private readonly Lock _gate = new();
    private readonly FlushCompletion _flush;
    private readonly List<(BlockRef Block, int Start, int Length)> _unflushed = [];
    private BlockRef? _current;
    private BlockRef? _parked;                   // under _gate: the current block after a flush, until written again or all is acknowledged
    private int _written;
    private int _flushedTo;
    private int _rentBytes;                      // the size the next block is rented at, at least the pool's block size
    private long _unflushedBytes;
    private long _inFlight;
    private bool _flushPending;                  // under _gate: a FlushAsync waits on _flush
    private CancellationToken _flushToken;       // under _gate: the waiting flush's token
    private CancellationTokenRegistration _flushRegistration;
    private bool _cancelNext;
    private readonly DrainCompletion _drain = new(); // the one completion behind WhenDrained (a connection is disposed once)
    private bool _drainWaiting;                  // under _gate: someone waits in WhenDrained
    private long _drainDeadline;                 // under _gate: its Stopwatch deadline
    private volatile bool _closed;
    private bool _completed;

    public VsoOutputWriter(ConnectionOperations operations, PinnedBlockClasses blocks, long pauseThreshold)
    {
        _operations = operations;
        _blocks = blocks;
        _flush = new FlushCompletion(this);
        _rentBytes = blocks.Base.BlockSize;
        PauseThreshold = pauseThreshold;
        ResumeThreshold = pauseThreshold / 2;
    }

    public long PauseThreshold { get; }

    public long ResumeThreshold { get; }

    /// <summary>Flushed bytes not yet acknowledged by the peer (sent or not).</summary>
    public long InFlightBytes => Interlocked.Read(ref _inFlight);

    public bool IsCompleted => _completed;

    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes => _unflushedBytes;

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        EnsureSpace(sizeHint);
        return _current!.Block.Memory[_written..];
    }

    public override Span<byte> GetSpan(int sizeHint = 0)
    {
        EnsureSpace(sizeHint);
        return _current!.Block.GetSpan()[_written..];
    }

    public override void Advance(int bytes)
    {
        if (bytes == 0)
        {
            return;
        }

        if (_current is null || bytes < 0 || bytes > _current.Block.Length - _written)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "Advance went past the memory returned by GetMemory/GetSpan.");
        }

        _written += bytes;
        _unflushedBytes += bytes;
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_completed)
        {
            throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
        }

        HandOver();
        lock (_gate)
        {
            Park();
            if (_cancelNext)
            {
                _cancelNext = false;
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: true, isCompleted: _closed));
            }

            if (_closed || Interlocked.Read(ref _inFlight) < PauseThreshold)
            {
                return new ValueTask<FlushResult>(new FlushResult(false, _closed));
            }

            // One reusable completion, no allocation per waiting flush. A result never taken is dropped here.
            _flush.Prepare();
            _flushPending = true;
            _flushToken = cancellationToken;
            if (cancellationToken.CanBeCanceled)
            {
                // Removed as soon as the flush completes, so a long-lived token gathers no registrations. A token
                // already cancelled runs the callback here (the gate is reentrant): nothing is left to remove then.
                var registration = cancellationToken.UnsafeRegister(static (state, token) => ((VsoOutputWriter)state!).CancelFlush(token), this);
                if (_flushPending)
                {
                    _flushRegistration = registration;
                }
                else
                {
                    registration.Unregister();
                }
            }

            return _flush.Task;
        }
    }

    public override void CancelPendingFlush()
    {
        lock (_gate)
        {
            if (!_flushPending)
            {
                // Pipe semantics: the next flush returns IsCanceled.
                _cancelNext = true;
                return;
            }
        }

        CompleteFlush(new FlushResult(isCanceled: true, isCompleted: _closed), null);
    }

    /// <summary>
    /// Without an exception: hands the written bytes over, then FIN after them (RFC 9293 §3.10.4). With one, as Kestrel's
    /// Sockets transport does: the connection is reset (RST, RFC 9293 §3.10.5) and unflushed bytes are dropped, unless
    /// <see cref="VsoTransportOptions.FinOnError"/> asks for FIN after the flushed data instead.
    /// </summary>
    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }

        var reset = exception is not null && !_operations.FinOnError;
        if (!_closed && !reset)
        {
            HandOver();
        }

        _completed = true;
        ReleaseCurrent();
        lock (_gate)
        {
            ReleaseParked();
        }

        DropUnflushed();
        if (reset)
        {
            _operations.PostAbort(new ConnectionAbortedException("output completed with an error: " + exception!.Message, exception));
        }
        else
        {
            _operations.PostShutdownSend();
        }
    }

    private void CancelFlush(CancellationToken token)
    {
        lock (_gate)
        {
            // A registration that fired while its flush was completing: a later flush is not its business.
            if (!_flushPending || _flushToken != token)
            {
                return;
            }
        }

        CompleteFlush(default, new OperationCanceledException(token));
    }

    /// <summary>Completes the waiting flush, if one still waits (any thread), and drops its token registration.</summary>
    private void CompleteFlush(FlushResult result, Exception? error)
    {
        CancellationTokenRegistration registration;
        lock (_gate)
        {
            if (!_flushPending)
            {
                return;
            }

            _flushPending = false;
            _flushToken = default;
            registration = _flushRegistration;
            _flushRegistration = default;
        }

        // Unregister, not Dispose: it never waits for a callback running on another thread (which finds no flush pending).
        registration.Unregister();
        _flush.Complete(result, error);
    }

    private void EnsureSpace(int sizeHint)
    {
        if (_completed)
        {
            throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
        }

        if (_current is null)
        {
            Unpark();
        }

        // A PipeWriter returns at least sizeHint bytes: a hint above the block size rents from a larger class.
        var need = Math.Max(sizeHint, 1);
        if (_current is not null && _current.Block.Length - _written >= need)
        {
            return;
        }

        if (_current is not null)
        {
            if (_written > _flushedTo)
            {
                _current.AddRef();
                _unflushed.Add((_current, _flushedTo, _written - _flushedTo));
            }

            // Filled at least three quarters: a stream, not a last small write.
            if (_written >= _current.Block.Length - (_current.Block.Length >> 2))
            {
                _rentBytes = Math.Min(Math.Max(_rentBytes, _current.Block.Length) * 2, MaxStreamingBlockBytes);
            }

            _current.Release();
        }

        _current = _blocks.Rent(Math.Max(need, _rentBytes));
        _written = 0;
        _flushedTo = 0;
    }

    /// <summary>Queues every written, unflushed range as a descriptor on the engine thread.</summary>
    private void HandOver()
    {
        if (_unflushedBytes == 0)
        {
            return;
        }

        if (_closed)
        {
            DropUnflushed();
            _flushedTo = _written;
            _unflushedBytes = 0;
            return;
        }

        foreach (var (block, start, length) in _unflushed)
        {
            // The reference taken when the range was parked passes to the descriptor.
            Interlocked.Add(ref _inFlight, length);
            _operations.PostSend(block, start, length);
        }

        _unflushed.Clear();
        if (_current is not null && _written > _flushedTo)
        {
            _current.AddRef();
            Interlocked.Add(ref _inFlight, _written - _flushedTo);
            _operations.PostSend(_current, _flushedTo, _written - _flushedTo);
            _flushedTo = _written;
        }

        _unflushedBytes = 0;
    }

    /// <summary>
    /// Under <see cref="_gate"/>, after a flush handed everything over: the current block waits for the next write, or, once
    /// the peer has acknowledged every flushed byte, goes back to the pool (<see cref="OnReleased"/>), so an idle
    /// keep-alive connection holds no pinned block.
    /// </summary>
    private void Park()
    {
        if (_current is null || _written != _flushedTo)
        {
            return;
        }

        _parked = _current;
        _current = null;
        if (Interlocked.Read(ref _inFlight) == 0)
        {
            ReleaseParked();
        }
    }

    /// <summary>Takes the parked block back for writing; if the engine released it meanwhile, a new block is rented.</summary>
    private void Unpark()
    {
        lock (_gate)
        {
            _current = _parked;
            _parked = null;
        }

        if (_current is null)
        {
            // Everything sent was acknowledged while the writer was idle: the next stream starts small again.
            _written = 0;
            _flushedTo = 0;
            _rentBytes = _blocks.Base.BlockSize;
        }
    }

    /// <summary>Under <see cref="_gate"/>.</summary>
    private void ReleaseParked()
    {
        _parked?.Release();
        _parked = null;
    }

    private void ReleaseCurrent()
    {
        _current?.Release();
        _current = null;
        _written = 0;
        _flushedTo = 0;
    }

    private void DropUnflushed()
    {
        foreach (var (block, _, _) in _unflushed)
        {
            block.Release();
        }

        _unflushed.Clear();
        _unflushedBytes = 0;
    }

    /// <summary>Engine thread: a descriptor of <paramref name="length"/> bytes was acknowledged or failed.</summary>
    public void OnReleased(long length)
    {
        var left = Interlocked.Add(ref _inFlight, -length);
        if (left == 0)
        {
            lock (_gate)
            {
                if (Interlocked.Read(ref _inFlight) == 0)
                {
                    ReleaseParked();
                    SignalDrained();
                }
            }
        }

        if (left >= ResumeThreshold)
        {
            return;
        }

        CompleteFlush(new FlushResult(false, _closed), null);
    }

    /// <summary>
    /// Any thread: true once every flushed byte is acknowledged or the connection has ended (at once if so already), false
    /// when <paramref name="timeout"/> passed first; DisposeAsync's bounded wait for the peer. Nothing is allocated: the
    /// completion is the writer's own, and the timeout is one shared timer's (<see cref="AcknowledgeWaits"/>).
    /// </summary>
    public ValueTask<bool> WhenDrained(TimeSpan timeout)
    {
        lock (_gate)
        {
            if (_closed || Interlocked.Read(ref _inFlight) == 0)
            {
                return new ValueTask<bool>(true);
            }

            _drain.Prepare();
            _drainWaiting = true;
            _drainDeadline = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        }

        AcknowledgeWaits.Add(this);
        return _drain.Task;
    }

    /// <summary>Under <see cref="_gate"/>: whoever waits in <see cref="WhenDrained"/> goes on (on the thread pool).</summary>
    private void SignalDrained()
    {
        if (_drainWaiting)
        {
            _drainWaiting = false;
            _drain.SetResult(true);
        }
    }

    /// <summary>The shared timer's tick: true when no wait of this writer is left for it (drained, or timed out now).</summary>
    internal bool ExpireDrainWait(long now)
    {
        lock (_gate)
        {
            if (!_drainWaiting)
            {
                return true;
            }

            if (now < _drainDeadline)
            {
                return false;
            }

            _drainWaiting = false;
            _drain.SetResult(false);
            return true;
        }
    }

    /// <summary>
    /// Engine thread, when the pooled set is given back: a completed writer with nothing in flight, no block and no waiting
    /// flush starts over; the flush completion's version moves on, so a stale flush's ValueTask can no longer be awaited.
    /// False (the writer is left to the garbage collector) if anything is still out.
    /// </summary>
    public bool TryReset()
    {
        lock (_gate)
        {
            if (!_completed || _current is not null || _parked is not null || _unflushed.Count != 0 || _flushPending || _drainWaiting || Interlocked.Read(ref _inFlight) != 0)
            {
                return false;
            }

            _flush.Recycle();
            _written = 0;
            _flushedTo = 0;
            _rentBytes = _blocks.Base.BlockSize;
            _unflushedBytes = 0;
            _flushToken = default;
            _flushRegistration = default;
            _cancelNext = false;
            _drain.Recycle();
            _drainDeadline = 0;
            _closed = false;
            _completed = false;
            return true;
        }
    }

    /// <summary>The connection ended: pending and later flushes report IsCompleted; later writes are dropped.</summary>
    public void OnConnectionClosed()
    {
        lock (_gate)
        {
            _closed = true;
            SignalDrained();
        }

        CompleteFlush(new FlushResult(false, true), null);
    }

    /// <summary>The completion behind <see cref="WhenDrained"/>: true drained, false timed out; continuations on the thread pool.</summary>
    private sealed class DrainCompletion : IValueTaskSource<bool>
    {
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };

        public ValueTask<bool> Task => new(this, _core.Version);

        /// <summary>Under the writer's gate, before a wait: a result never taken is dropped.</summary>
        public void Prepare() => _core.Reset();

        public void Recycle() => _core.Reset();

        public void SetResult(bool drained) => _core.SetResult(drained);

        public bool GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }

    /// <summary>
    /// The one completion behind every FlushAsync that has to wait (a single writer waits for one flush at a time).
    /// Continuations run on the thread pool, never on the engine thread that completes it.
    /// </summary>
    private sealed class FlushCompletion(VsoOutputWriter writer) : IValueTaskSource<FlushResult>
    {
        private ManualResetValueTaskSourceCore<FlushResult> _core = new() { RunContinuationsAsynchronously = true };
        private bool _issued;   // under the writer's gate: handed out and its result not yet taken

        public ValueTask<FlushResult> Task => new(this, _core.Version);

        /// <summary>Under the writer's gate, before a flush waits.</summary>
        public void Prepare()
        {
            if (_issued)
            {
                // The previous waiting flush's result was never taken (or is being taken now: it completed).
                _core.Reset();
            }

            _issued = true;
        }

        /// <summary>Under the writer's gate, no flush waiting: a new version for the writer's next connection.</summary>
        public void Recycle()
        {
            _core.Reset();
            _issued = false;
        }

        public void Complete(FlushResult result, Exception? error)
        {
            if (error is null)
            {
                _core.SetResult(result);
            }
            else
            {
                _core.SetException(error);
            }
        }

        public FlushResult GetResult(short token)
        {
            try
            {
                return _core.GetResult(token);
            }
            finally
            {
                lock (writer._gate)
                {
                    if (_issued && _core.Version == token)
                    {
                        _core.Reset();
                        _issued = false;
                    }
                }
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
