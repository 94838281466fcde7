using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Vso.MemoryPinning;
using Vso.Transport.Api;

namespace Vso.Transport.Kestrel;

/// <summary>
/// One accepted TCP connection as Kestrel sees it: the <see cref="ConnectionContext"/> and its features. Output is
/// <see cref="VsoOutputWriter"/> over pinned blocks, whose bytes <see cref="PinnedBlockSendHost"/> hands to the sender;
/// Input is the pipe <see cref="InputPump"/> fills; <see cref="ConnectionOperations"/> carries the application's requests
/// to the engine thread. Everything reaches the stack through its public <see cref="VsoConnectionEndpoint"/>.
/// </summary>
internal sealed class VsoTransportConnection : ConnectionContext,
    IConnectionIdFeature,
    IConnectionTransportFeature,
    IConnectionItemsFeature,
    IMemoryPoolFeature,
    IConnectionLifetimeFeature,
    IConnectionEndPointFeature,
    IVsoTcpInfoFeature
{
    private static long _lastId;

    private readonly VsoConnectionEndpoint _endpoint;
    private readonly PinnedBlockPool _pool;
    private readonly ILogger _log;
    private readonly ConnectionOperations _operations;
    private readonly InputPump _input;
    private readonly VsoOutputWriter _output;
    private readonly PinnedBlockSendHost _host;
    private readonly CancellationTokenSource _closedSource = new();
    private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<VsoTransportConnection, ProxyRejection>? _onProxyHeader;
    private readonly Timer? _proxyTimer;
    private readonly ConnectionDrain? _drain;
    private int _drainState;
    private int _disposed;
    private IDictionary<object, object?>? _items;

    /// <summary>Engine thread (the listener's accept callback): from now on this connection is told of the endpoint's life.</summary>
    /// <param name="proxyMode">The PROXY protocol versions expected before the application's bytes; None for none.</param>
    /// <param name="onProxyHeader">Engine thread, once, with <paramref name="proxyMode"/>: the header was accepted (None) or refused.</param>
    public VsoTransportConnection(
        VsoConnectionEndpoint endpoint,
        PinnedBlockClasses blocks,
        VsoTransportOptions options,
        ILogger log,
        VsoProxyProtocol proxyMode = VsoProxyProtocol.None,
        Action<VsoTransportConnection, ProxyRejection>? onProxyHeader = null,
        ConnectionDrain? drain = null)
    {
        _drain = drain;
        _endpoint = endpoint;
        _pool = blocks.Base;
        _log = log;
        ConnectionId = NewConnectionId(Interlocked.Increment(ref _lastId));
        LocalEndPoint = endpoint.LocalEndPoint;
        RemoteEndPoint = endpoint.RemoteEndPoint;
        ConnectionClosed = _closedSource.Token;

        _operations = new ConnectionOperations(endpoint, ConnectionId, options.FinOnError, log, OnEnded);
        _input = new InputPump(endpoint, _pool, options.MaxReadBufferSize, _operations.PostResumeRead, options.ConnectionClosedOnPeerFin ? FireClosed : null, options.ApplicationOnEngineThread, options.ReaderScheduler);
        _output = new VsoOutputWriter(_operations, blocks, options.MaxWriteBufferSize);
        _host = new PinnedBlockSendHost(blocks, _output);
        _operations.Attach(_input, _output, _host);
        Transport = new DuplexPipe(_input.Reader, _output);

        Features = new FeatureCollection();
        Features.Set<IConnectionIdFeature>(this);
        Features.Set<IConnectionTransportFeature>(this);
        Features.Set<IConnectionItemsFeature>(this);
        Features.Set<IMemoryPoolFeature>(this);
        Features.Set<IConnectionLifetimeFeature>(this);
        Features.Set<IConnectionEndPointFeature>(this);
        Features.Set<IVsoTcpInfoFeature>(this);

        if (proxyMode != VsoProxyProtocol.None)
        {
            // proxy-protocol.txt §2: a receiver may abort a connection whose header does not come within a few seconds.
            _onProxyHeader = onProxyHeader;
            _input.ExpectProxyHeader(new ProxyHeaderReader(proxyMode), OnProxyHeader);
            _proxyTimer = new Timer(static state => ((ConnectionOperations)state!).PostProxyHeaderTimeout(), _operations, options.ProxyProtocolTimeout, System.Threading.Timeout.InfiniteTimeSpan);
        }

        // Known to the drain before anything can end it (the first bytes may already refuse a PROXY header).
        _drain?.Add(this);

        // Bytes may have arrived with the handshake's last ACK.
        _input.Pump();
    }

    public override string ConnectionId { get; set; }

    /// <summary>"vso-" and the number in at least 8 hex digits, built as one string (not a number string and a concatenation).</summary>
    private static string NewConnectionId(long id)
    {
        var digits = Math.Max(8, (64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)id) + 3) / 4);
        return string.Create(4 + digits, id, static (span, value) =>
        {
            "vso-".CopyTo(span);
            value.TryFormat(span[4..], out _, "x8", System.Globalization.CultureInfo.InvariantCulture);
        });
    }

    public override IFeatureCollection Features { get; }

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new ConnectionItems();
        set => _items = value;
    }

    public override IDuplexPipe Transport { get; set; }

    public MemoryPool<byte> MemoryPool => _pool;

    internal VsoOutputWriter Output => _output;

    internal IVsoSendHost SendHost => _host;

    /// <summary>Completes when the TCP connection has ended (closed in order, reset or failed).</summary>
    internal Task Ended => _ended.Task;

    public TcpConnectionInfo GetInfo() => _endpoint.GetInfo();

    /// <summary>
    /// Resets the connection (RFC 9293 §3.10.5: RST, pending data discarded); ConnectionClosed fires. As Kestrel's Sockets
    /// transport: with <see cref="VsoTransportOptions.FinOnError"/>, or with a null reason (Kestrel's orderly end), the
    /// connection ends with FIN after the flushed data instead.
    /// </summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        if (abortReason is not null && !_operations.FinOnError)
        {
            // A reset while the listener drains (Kestrel's HostOptions.ShutdownTimeout, or a connection never accepted).
            CountDrain(reset: true);
        }

        _operations.PostAbort(abortReason!);
    }

    /// <summary>Any thread: the listener stopped; from now on this connection's end is counted. False if it had ended already.</summary>
    internal bool BeginDrain(ConnectionDrain drain) =>
        drain == _drain && Interlocked.CompareExchange(ref _drainState, DrainOpen, 0) == 0;

    /// <summary>Any thread: Vso:DrainTimeout passed with this connection still open: RST. False if it had finished already.</summary>
    internal bool ResetForDrain()
    {
        if (!CountDrain(reset: true))
        {
            return false;
        }

        _operations.PostReset(new ConnectionAbortedException("The connection was reset because Vso:DrainTimeout passed while the server was stopping."));
        return true;
    }

    private const int DrainOpen = 1;
    private const int DrainCounted = 2;

    /// <summary>Counts a draining connection's outcome once; false when it was not draining or was counted before.</summary>
    private bool CountDrain(bool reset)
    {
        if (Interlocked.CompareExchange(ref _drainState, DrainCounted, DrainOpen) != DrainOpen)
        {
            return false;
        }

        _drain!.Count(reset);
        return true;
    }

    /// <summary>The connection is done (TCP ended, or the application let it go): it no longer needs draining.</summary>
    private void Finished()
    {
        CountDrain(reset: false);
        _drain?.Remove(this);
    }

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

        if (_proxyTimer is not null)
        {
            await _proxyTimer.DisposeAsync().ConfigureAwait(false);
        }

        _output.Complete();
        await _input.Reader.CompleteAsync().ConfigureAwait(false);
        _operations.PostClose();

        // Woken by the acknowledgment that empties the writer or by the connection's end, not by polling: no timer per
        // connection unless it has to wait, and the connection's objects go as soon as the peer has everything.
        var drained = _output.WhenDrained();
        if (!drained.IsCompleted)
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                await drained.WaitAsync(AcknowledgeWait).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                _log.AcknowledgeWaitTimedOut(ConnectionId, _output.InFlightBytes, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
        }

        FireClosed();
        Finished();
        await base.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>How long DisposeAsync waits for the peer to acknowledge what was sent (a drain ends it sooner by a reset).</summary>
    internal static TimeSpan AcknowledgeWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Engine thread: the PROXY header is done. Accepted, its end points become the connection's and its fields a feature,
    /// all before the listener hands the connection to Kestrel; refused, the listener resets the connection.
    /// </summary>
    private void OnProxyHeader(ProxyHeaderReader reader)
    {
        _proxyTimer?.Dispose();
        if (reader.Rejection == ProxyRejection.None)
        {
            var header = reader.Header;
            Features.Set<IProxyProtocolFeature>(new ProxyProtocolFeature(header, RemoteEndPoint, reader.Tlvs));
            if (header.IsProxied)
            {
                RemoteEndPoint = header.Source;
                LocalEndPoint = header.Destination;
            }
        }

        _onProxyHeader?.Invoke(this, reader.Rejection);
    }

    /// <summary>Engine thread: the TCP connection ended.</summary>
    private void OnEnded()
    {
        Finished();
        FireClosed();
        _ended.TrySetResult();
    }

    /// <summary>Any thread: ConnectionClosed fires (once) on the thread pool. The TCP connection ended, the application disposed
    /// the connection, or (<see cref="VsoTransportOptions.ConnectionClosedOnPeerFin"/>) the peer's FIN was read.</summary>
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
#pragma warning disable CA1031 // Application callbacks on ConnectionClosed: any exception is logged, as Kestrel's SocketConnection does.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                // An application callback threw: log it, never let it take the process down.
                state._log.ClosedCallbackFailed(state.ConnectionId, ex);
            }
        }, this, preferLocal: false);
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class ConnectionItems : Dictionary<object, object?>
    {
    }
}
