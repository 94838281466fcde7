using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Runtime.CompilerServices;
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
internal sealed partial class VsoTransportConnection : ConnectionContext,
    IConnectionIdFeature,
    IConnectionTransportFeature,
    IConnectionItemsFeature,
    IMemoryPoolFeature,
    IConnectionLifetimeFeature,
    IConnectionEndPointFeature,
    IVsoTcpInfoFeature,
    IDuplexPipe,
    IThreadPoolWorkItem
{
    private static long _lastId;

    private readonly VsoConnectionEndpoint _endpoint;
    private readonly PinnedBlockPool _pool;
    private readonly ILogger _log;
    private readonly ConnectionOperations _operations;
    private readonly int _generation;
    private readonly ConnectionInput _inputFacade;
    private readonly ConnectionOutput _outputFacade;
    private readonly CancellationTokenSource _closedSource = new();
    private readonly Action<VsoTransportConnection, ProxyRejection>? _onProxyHeader;
    private readonly Timer? _proxyTimer;
    private readonly ConnectionDrain? _drain;
    private TaskCompletionSource? _ended;   // made only when someone waits for the end (Ended)
    private volatile bool _hasEnded;
    private int _drainState;
    private int _disposed;
    private IDictionary<object, object?>? _items;
    private IDuplexPipe _transport;
    private EndPoint? _localEndPoint;
    private EndPoint? _remoteEndPoint;

    /// <summary>Engine thread (the listener's accept callback): from now on this connection is told of the endpoint's life.</summary>
    /// <param name="state">The listener's pooled per-connection state, rented for this connection (it returns to its pool by itself).</param>
    /// <param name="proxyMode">The PROXY protocol versions expected before the application's bytes; None for none.</param>
    /// <param name="onProxyHeader">Engine thread, once, with <paramref name="proxyMode"/>: the header was accepted (None) or refused.</param>
    public VsoTransportConnection(
        VsoConnectionEndpoint endpoint,
        ConnectionOperations state,
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
        ConnectionClosed = _closedSource.Token;

        _operations = state;
        _generation = state.Generation;
        state.Bind(endpoint, this, ConnectionId, log);
        _inputFacade = new ConnectionInput(state.Input.Reader);
        _outputFacade = new ConnectionOutput(state.Output);
        _transport = this;

        if (proxyMode != VsoProxyProtocol.None)
        {
            // proxy-protocol.txt §2: a receiver may abort a connection whose header does not come within a few seconds.
            _onProxyHeader = onProxyHeader;
            state.Input.ExpectProxyHeader(new ProxyHeaderReader(proxyMode), OnProxyHeader);
            _proxyTimer = new Timer(static s => ((VsoTransportConnection)s!).OnProxyHeaderTimeout(), this, options.ProxyProtocolTimeout, System.Threading.Timeout.InfiniteTimeSpan);
        }

        // Known to the drain before anything can end it (the first bytes may already refuse a PROXY header).
        _drain?.Add(this);

        // Bytes may have arrived with the handshake's last ACK.
        state.Input.Pump();
    }

    /// <summary>The next and previous connection in the drain's list (<see cref="ConnectionDrain"/>, under its lock).</summary>
    internal VsoTransportConnection? DrainNext { get; set; }

    /// <inheritdoc cref="DrainNext"/>
    internal VsoTransportConnection? DrainPrevious { get; set; }

    /// <summary>Whether the drain's list holds this connection (under its lock).</summary>
    internal bool InDrainList { get; set; }

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

    /// <summary>Built from the endpoint on first use (nothing per connection unless someone asks); a PROXY header replaces them.</summary>
    public override EndPoint? LocalEndPoint
    {
        get => _localEndPoint ??= _endpoint.LocalEndPoint;
        set => _localEndPoint = value;
    }

    /// <inheritdoc cref="LocalEndPoint"/>
    public override EndPoint? RemoteEndPoint
    {
        get => _remoteEndPoint ??= _endpoint.RemoteEndPoint;
        set => _remoteEndPoint = value;
    }

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new ConnectionItems();
        set => _items = value;
    }

    /// <summary>The connection itself until middleware replaces it (its Input and Output cut off at dispose).</summary>
    public override IDuplexPipe Transport
    {
        get => _transport;
        set => _transport = value;
    }

    PipeReader IDuplexPipe.Input => _inputFacade;

    PipeWriter IDuplexPipe.Output => _outputFacade;

    public MemoryPool<byte> MemoryPool => _pool;

    internal VsoOutputWriter Output => _operations.Output;

    internal IVsoSendHost SendHost => _operations.Host;

    /// <summary>The pooled state this connection was given (tests).</summary>
    internal ConnectionOperations State => _operations;

    /// <summary>Completes when the TCP connection has ended (closed in order, reset or failed).</summary>
    internal Task Ended
    {
        get
        {
            var ended = Volatile.Read(ref _ended) ?? Interlocked.CompareExchange(ref _ended, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), null) ?? _ended!;
            if (_hasEnded)
            {
                ended.TrySetResult();
            }

            return ended.Task;
        }
    }

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

        _operations.PostAbort(abortReason!, _generation);
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

        _operations.PostReset(new ConnectionAbortedException("The connection was reset because Vso:DrainTimeout passed while the server was stopping."), _generation);
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
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))] // its state machine reused, not one per connection
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

        var output = _operations.Output;
        output.Complete();
        await _operations.Input.Reader.CompleteAsync().ConfigureAwait(false);
        _operations.PostClose(_generation);

        // Woken by the acknowledgment that empties the writer or by the connection's end, not by polling; bounded by one
        // timer shared by every waiting connection, and the connection's objects go as soon as the peer has everything.
        var started = Stopwatch.GetTimestamp();
        if (!await output.WhenDrained(AcknowledgeWait).ConfigureAwait(false))
        {
            _log.AcknowledgeWaitTimedOut(ConnectionId, output.InFlightBytes, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }

        FireClosed();
        Finished();

        // Kestrel is done with the connection: references still held to its pipes reach nothing from now on, and the
        // pooled state goes back once the TCP connection has ended too (ConnectionOperations).
        _inputFacade.Detach();
        _outputFacade.Detach();
        _operations.PostRelease(_generation);
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
            _proxyFeature = new ProxyProtocolFeature(header, RemoteEndPoint, reader.Tlvs);
            if (header.IsProxied)
            {
                RemoteEndPoint = header.Source;
                LocalEndPoint = header.Destination;
            }
        }

        _onProxyHeader?.Invoke(this, reader.Rejection);
    }

    private IProxyProtocolFeature? _proxyFeature;

    /// <summary>Timer thread: Vso:ProxyProtocolTimeout ran out (dropped if the connection's state serves another by now).</summary>
    private void OnProxyHeaderTimeout() => _operations.PostProxyHeaderTimeout(_generation);

    /// <summary>Engine thread: the TCP connection ended.</summary>
    internal void OnEnded()
    {
        Finished();
        FireClosed();
        _hasEnded = true;
        Volatile.Read(ref _ended)?.TrySetResult();
    }

    /// <summary>Any thread: ConnectionClosed fires (once) on the thread pool. The TCP connection ended, the application disposed
    /// the connection, or (<see cref="VsoTransportOptions.ConnectionClosedOnPeerFin"/>) the peer's FIN was read.</summary>
    internal void FireClosed()
    {
        if (_closedSource.IsCancellationRequested || Interlocked.Exchange(ref _closedQueued, 1) != 0)
        {
            return;
        }

        // Never run the application's callbacks on the engine thread. The connection is its own work item: nothing allocated.
        ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    private int _closedQueued;

    void IThreadPoolWorkItem.Execute()
    {
        try
        {
            _closedSource.Cancel();
        }
#pragma warning disable CA1031 // Application callbacks on ConnectionClosed: any exception is logged, as Kestrel's SocketConnection does.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            // An application callback threw: log it, never let it take the process down.
            _log.ClosedCallbackFailed(ConnectionId, ex);
        }
    }

    private sealed class ConnectionItems : Dictionary<object, object?>
    {
    }
}
