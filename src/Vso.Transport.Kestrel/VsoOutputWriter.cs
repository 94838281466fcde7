using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Vso.MemoryPinning;

namespace Vso.Transport.Kestrel;

/// <summary>
/// <c>Transport.Output</c>, the writer over pinned blocks. Kestrel writes into blocks of the pinned pool; FlushAsync queues
/// each written block range on the connection's endpoint (address, length, block id, generation), so the sender's
/// descriptor chain is the retransmission queue and no byte is copied before it goes on the wire; the bytes' host is
/// <see cref="PinnedBlockSendHost"/>, which gives the writer its credit back. A block returns to the pool when the
/// writer has moved past it and every range of it is acknowledged (or failed).
/// Backpressure counts flushed bytes that are unsent or unacknowledged: FlushAsync completes once they are below
/// <see cref="PauseThreshold"/>, or, if it had to wait, once they fell below <see cref="ResumeThreshold"/>.
/// Single writer (Kestrel's contract); acknowledgments arrive on the engine thread.
/// </summary>
internal sealed class VsoOutputWriter : PipeWriter
{
    private readonly ConnectionOperations _connection;
    private readonly PinnedBlockPool _pool;
    private readonly Lock _gate = new();
    private readonly List<(BlockRef Block, int Start, int Length)> _unflushed = [];
    private BlockRef? _current;
    private int _written;
    private int _flushedTo;
    private long _unflushedBytes;
    private long _inFlight;
    private TaskCompletionSource<FlushResult>? _pendingFlush;
    private bool _cancelNext;
    private volatile bool _closed;
    private bool _completed;

    public VsoOutputWriter(ConnectionOperations connection, PinnedBlockPool pool, long pauseThreshold)
    {
        _connection = connection;
        _pool = pool;
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

        if (_current is null || bytes < 0 || bytes > _pool.BlockSize - _written)
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
            if (_cancelNext)
            {
                _cancelNext = false;
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: true, isCompleted: _closed));
            }

            if (_closed || Interlocked.Read(ref _inFlight) < PauseThreshold)
            {
                return new ValueTask<FlushResult>(new FlushResult(false, _closed));
            }

            var pending = new TaskCompletionSource<FlushResult>(TaskCreationOptions.RunContinuationsAsynchronously);
            _pendingFlush = pending;
            if (cancellationToken.CanBeCanceled)
            {
                cancellationToken.UnsafeRegister(static (state, token) =>
                {
                    var (writer, tcs) = ((VsoOutputWriter, TaskCompletionSource<FlushResult>))state!;
                    writer.CancelFlush(tcs, token);
                }, (this, pending));
            }

            return new ValueTask<FlushResult>(pending.Task);
        }
    }

    public override void CancelPendingFlush()
    {
        TaskCompletionSource<FlushResult>? pending;
        lock (_gate)
        {
            pending = _pendingFlush;
            _pendingFlush = null;
            if (pending is null)
            {
                // Pipe semantics: the next flush returns IsCanceled.
                _cancelNext = true;
            }
        }

        pending?.TrySetResult(new FlushResult(isCanceled: true, isCompleted: _closed));
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

        var reset = exception is not null && !_connection.FinOnError;
        if (!_closed && !reset)
        {
            HandOver();
        }

        _completed = true;
        ReleaseCurrent();
        DropUnflushed();
        if (reset)
        {
            _connection.PostAbort(new ConnectionAbortedException("output completed with an error: " + exception!.Message, exception));
        }
        else
        {
            _connection.PostShutdownSend();
        }
    }

    private void CancelFlush(TaskCompletionSource<FlushResult> pending, CancellationToken token)
    {
        lock (_gate)
        {
            if (_pendingFlush == pending)
            {
                _pendingFlush = null;
            }
        }

        pending.TrySetCanceled(token);
    }

    private void EnsureSpace(int sizeHint)
    {
        if (_completed)
        {
            throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
        }

        // Blocks have a fixed size: a hint above it gets a whole fresh block (Kestrel asks for at most a block).
        var need = Math.Clamp(sizeHint, 1, _pool.BlockSize);
        if (_current is not null && _pool.BlockSize - _written >= need)
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

            _current.Release();
        }

        _current = new BlockRef(_pool.Rent());
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
            _connection.PostSend(block, start, length);
        }

        _unflushed.Clear();
        if (_current is not null && _written > _flushedTo)
        {
            _current.AddRef();
            Interlocked.Add(ref _inFlight, _written - _flushedTo);
            _connection.PostSend(_current, _flushedTo, _written - _flushedTo);
            _flushedTo = _written;
        }

        _unflushedBytes = 0;
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
        if (left >= ResumeThreshold)
        {
            return;
        }

        TaskCompletionSource<FlushResult>? pending;
        lock (_gate)
        {
            pending = _pendingFlush;
            _pendingFlush = null;
        }

        pending?.TrySetResult(new FlushResult(false, _closed));
    }

    /// <summary>The connection ended: pending and later flushes report IsCompleted; later writes are dropped.</summary>
    public void OnConnectionClosed()
    {
        TaskCompletionSource<FlushResult>? pending;
        lock (_gate)
        {
            _closed = true;
            pending = _pendingFlush;
            _pendingFlush = null;
        }

        pending?.TrySetResult(new FlushResult(false, true));
    }
}
