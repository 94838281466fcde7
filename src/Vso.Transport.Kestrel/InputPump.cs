using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel;

/// <summary>
/// <c>Transport.Input</c>: a <see cref="Pipe"/> the engine thread fills from the connection's receive buffer, and stops
/// filling while the pipe is above its pause threshold, so that the advertised window closes (RFC 9293 §3.8.6: the
/// window is the receiver's buffer space) and the peer is held back. Engine thread, except the drain wait.
/// </summary>
internal sealed class InputPump : PipeScheduler
{
    private readonly ConnectionOperations _operations;
    private readonly PinnedBlockPool _pool;
    private readonly Pipe _pipe;
    private readonly PipeScheduler? _poolScheduler; // null: the thread pool
    private readonly bool _peerFinCloses;
    private readonly bool _readerOnEngineThread;
    private VsoConnectionEndpoint _endpoint = null!;
    private ProxyHeaderReader? _header;
    private Action<ProxyHeaderReader>? _headerDone;
    private bool _paused;
    private bool _done;
    private int _taken;   // bytes written into the pipe straight from frames, not yet flushed
    private bool _inline; // the reader's continuations run on the engine thread (see Schedule)
    private bool _classified;
    private bool _answered; // the connection has sent application bytes (a response): later requests run inline

    /// <param name="operations">Brings <see cref="Resume"/> to the engine thread once a paused pipe drained; its owner is told of the peer's FIN.</param>
    /// <param name="peerFinCloses">Whether the owner's ConnectionClosed fires (engine thread, once) when the input ended because the peer's FIN was read.</param>
    public InputPump(ConnectionOperations operations, PinnedBlockPool pool, long maxReadBufferSize, bool peerFinCloses = false, bool readerOnEngineThread = false, PipeScheduler? poolScheduler = null)
    {
        _poolScheduler = poolScheduler;
        _operations = operations;
        _pool = pool;
        _peerFinCloses = peerFinCloses;
        _readerOnEngineThread = readerOnEngineThread;

        // Reader continuations run on the thread pool, or, with VsoTransportOptions.ApplicationOnEngineThread, inline on the
        // engine thread that flushes (this pump is the reader's scheduler: see Schedule); the writer (engine) side only posts.
        _inline = readerOnEngineThread;
        _pipe = new Pipe(new PipeOptions(
            pool,
            readerScheduler: this,
            writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: maxReadBufferSize,
            resumeWriterThreshold: maxReadBufferSize / 2,
            useSynchronizationContext: false));
    }

    /// <summary>Engine thread: the pump serves the connection behind <paramref name="endpoint"/> (a pooled pump: after <see cref="TryReset"/>).</summary>
    public void Bind(VsoConnectionEndpoint endpoint) => _endpoint = endpoint;

    /// <summary>
    /// Engine thread, when the pooled set is given back: the pipe is reset (Pipe.Reset, its segments kept) if both its
    /// ends completed, and the pump forgets the connection. False when the pipe cannot be reused.
    /// </summary>
    public bool TryReset()
    {
        if (!_done || _header is not null)
        {
            return false;
        }

        try
        {
            // Throws while the reader has not completed: then the pipe is left to the garbage collector.
            _pipe.Reset();
        }
        catch (InvalidOperationException)
        {
            return false;
        }

        _endpoint = null!;
        _headerDone = null;
        _paused = false;
        _done = false;
        _taken = 0;
        _inline = _readerOnEngineThread;
        _classified = false;
        _answered = false;
        return true;
    }

    public PipeReader Reader => _pipe.Reader;

    /// <summary>
    /// The input pipe's reader scheduler: on the engine thread right after the turn the bytes arrived in (with
    /// ApplicationOnEngineThread, once the connection has answered: <see cref="OnSending"/>), except for a connection that
    /// opened with the HTTP/2 preface or a TLS record (<see cref="Classify"/>), or one whose application once held the
    /// engine thread too long (the endpoint refuses it then); otherwise the thread pool, as
    /// <see cref="PipeScheduler.ThreadPool"/> does. A connection's first request goes to the pool: with Connection: close
    /// it is the only one, and Kestrel's whole connection (its start, the request, its teardown) would otherwise run on the
    /// one engine thread; keep-alive requests after it run on the engine thread, where the saved hop pays (issue 12).
    /// </summary>
    public override void Schedule(Action<object?> action, object? state)
    {
        if (_inline && _answered && _endpoint is { } endpoint && endpoint.TryRunAfterTurn(action, state))
        {
            return;
        }

        if (_poolScheduler is not null)
        {
            _poolScheduler.Schedule(action, state);
        }
        else
        {
            System.Threading.ThreadPool.UnsafeQueueUserWorkItem(action, state, preferLocal: false);
        }
    }

    /// <summary>
    /// Engine thread, with the connection's first application bytes. HTTP/2 (the prior-knowledge preface, RFC 9113 §3.4)
    /// and TLS (a handshake record, RFC 8446 §5.1) keep the reader on the thread pool: Kestrel runs every HTTP/2 stream on
    /// the pool anyway, so parsing frames and HPACK inline only adds a cross-thread wake-up per batch of streams and the
    /// parsing itself to the engine thread, and a TLS handshake is CPU the engine must not spend (issue 12, item 5).
    /// HTTP/1.x requests, whose handler answers in the same turn, stay inline.
    /// </summary>
    private void Classify(ReadOnlySpan<byte> first)
    {
        if (_classified || first.IsEmpty)
        {
            return;
        }

        _classified = true;
        if (!_inline)
        {
            return;
        }

        ReadOnlySpan<byte> preface = "PRI * HTTP/2.0"u8;
        var n = Math.Min(first.Length, preface.Length);
        if (first[0] == TlsHandshakeRecord || first[..n].SequenceEqual(preface[..n]))
        {
            _inline = false;
        }
    }

    private const byte TlsHandshakeRecord = 0x16;

    /// <summary>Engine thread: the application's bytes are being queued for sending (it answered).</summary>
    public void OnSending() => _answered = true;

    /// <summary>
    /// Engine thread, before the first <see cref="Pump"/>: the connection starts with a PROXY protocol header, read here
    /// before any byte reaches the pipe; <paramref name="done"/> is told once, accepted or refused.
    /// </summary>
    public void ExpectProxyHeader(ProxyHeaderReader reader, Action<ProxyHeaderReader> done)
    {
        _header = reader;
        _headerDone = done;
    }

    /// <summary>Engine thread: the header's time is up.</summary>
    public void OnProxyHeaderTimeout()
    {
        if (_header is not null)
        {
            RejectHeader(ProxyRejection.Timeout);
        }
    }

    /// <summary>Engine thread: the pipe drained below its resume threshold; move what waits.</summary>
    public void Resume()
    {
        _paused = false;
        Pump();
    }

    /// <summary>
    /// In-order bytes straight from a frame (issue 12: one copy on receive): written into the pipe's pinned memory now and
    /// flushed by the <see cref="Pump"/> that follows the segment. Refused while the pipe is paused or the input ended,
    /// so that the bytes wait in the receive buffer and the window closes as before.
    /// </summary>
    public bool TryTake(ReadOnlySpan<byte> payload)
    {
        if (_paused || _done || _header is not null)
        {
            return false;
        }

        Classify(payload);
        var writer = _pipe.Writer;
        while (!payload.IsEmpty)
        {
            var span = writer.GetSpan(Math.Min(payload.Length, _pool.BlockSize));
            var n = Math.Min(span.Length, payload.Length);
            payload[..n].CopyTo(span);
            writer.Advance(n);
            payload = payload[n..];
            _taken += n;
        }

        return true;
    }

    /// <summary>Moves received bytes into the input pipe until the connection's buffer is empty or the pipe is full.</summary>
    public void Pump()
    {
        if (_paused)
        {
            return;
        }

        if (_done)
        {
            // The application stopped reading: discard, so the window stays open and the connection can finish.
            Span<byte> sink = stackalloc byte[2048];
            while (_endpoint.ReadableBytes > 0 && _endpoint.Read(sink) > 0)
            {
            }

            return;
        }

        var writer = _pipe.Writer;
        var moved = _taken;
        _taken = 0;
        if (_header is not null)
        {
            // TryTake refuses while a PROXY header is awaited, so nothing was taken: the header reader sees every byte.
            moved = ReadHeader();
            if (moved < 0)
            {
                return;
            }
        }

        while (_endpoint.ReadableBytes > 0)
        {
            var span = writer.GetSpan(Math.Min(_endpoint.ReadableBytes, _pool.BlockSize));
            var n = _endpoint.Read(span);
            if (n == 0)
            {
                break;
            }

            Classify(span[..n]);

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
                    Complete(null);
                    return;
                }
            }
            else
            {
                // Above the pause threshold: stop reading; the receive buffer fills and the window closes.
                _paused = true;
                _ = ResumeWhenDrained(flush);
                return;
            }
        }

        if (_endpoint.IsEndOfStream && !_done)
        {
            // The peer's FIN, every byte before it in the pipe: end of the input stream, then tell the connection, as
            // the Sockets transport's receive loop completes its input and fires ConnectionClosed in that order.
            Complete(null);
            if (_peerFinCloses)
            {
                _operations.Owner?.FireClosed();
            }
        }
    }

    /// <summary>Engine thread: the connection ended; a reset or failure ends the input with an error Kestrel knows (it logs resets at debug level).</summary>
    public void OnClosed(TcpConnectionException? error)
    {
        Pump();
        if (_header is not null)
        {
            RejectHeader(ProxyRejection.Truncated);
        }

        Complete(error is null ? null : new ConnectionResetException(error.Message, error));
    }

    /// <summary>Engine thread: ends the input stream (once).</summary>
    public void Complete(Exception? error)
    {
        if (_done)
        {
            return;
        }

        _done = true;
        _pipe.Writer.Complete(error);
    }

    /// <summary>
    /// Reads toward the PROXY header: -1 while it is incomplete or once it is refused; otherwise the number of bytes that
    /// followed it, already written (not flushed) to the pipe, after the connection took the header's end points.
    /// </summary>
    private int ReadHeader()
    {
        var reader = _header!;
        var status = reader.Read(_endpoint);
        if (status == ProxyHeaderStatus.Incomplete)
        {
            if (_endpoint.IsEndOfStream)
            {
                RejectHeader(ProxyRejection.Truncated);
            }

            return -1;
        }

        if (status == ProxyHeaderStatus.Invalid)
        {
            RejectHeader(reader.Rejection);
            return -1;
        }

        _header = null;
        _headerDone!(reader);
        var leftover = reader.Leftover;
        var length = leftover.Length;
        if (length > 0)
        {
            Classify(leftover);
            leftover.CopyTo(_pipe.Writer.GetSpan(length));
            _pipe.Writer.Advance(length);
        }

        reader.Release();
        return length;
    }

    private void RejectHeader(ProxyRejection reason)
    {
        var reader = _header!;
        _header = null;
        reader.Reject(reason);
        reader.Release();
        Complete(new ConnectionAbortedException("The PROXY protocol header was refused: " + VsoTransportMetrics.ReasonName(reason) + "."));
        _headerDone!(reader);
    }

    private async Task ResumeWhenDrained(ValueTask<FlushResult> flush)
    {
        // The set may serve another connection by the time the flush completes: the resume carries this one's generation.
        var generation = _operations.Generation;
        FlushResult result;
        try
        {
            result = await flush.ConfigureAwait(false);
        }
#pragma warning disable CA1031 // Whatever failed the flush, the reader is gone: treat it as completed, as Kestrel's own pumps do.
        catch (Exception)
#pragma warning restore CA1031
        {
            result = new FlushResult(false, true);
        }

        if (generation != _operations.Generation)
        {
            return;
        }

        if (result.IsCompleted)
        {
            _done = true;
        }

        _operations.PostResumeRead(generation);
    }
}
