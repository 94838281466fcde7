using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// One TCP connection: the RFC 9293 state machine with its send side over <see cref="SendDescriptor"/>s
/// and its receive side over a <see cref="ReceiveBuffer"/>. Everything here runs on the engine thread;
/// the application reaches it through commands the engine applies (see Api/).
/// Split by concern: this file holds state and the application's operations, the others input
/// (TcpConnection.Input.cs), output (TcpConnection.Output.cs) and timers (TcpConnection.Timers.cs).
/// </summary>
internal sealed partial class TcpConnection : ILossRecoverySender
{
    private readonly TcpLayer _layer;
    private readonly TcpSettings _settings;
    private readonly SendQueue _send = new();
    private readonly ReceiveBuffer _receive;
    private readonly RttEstimator _rtt;
    private readonly ICongestionControl _congestion;
    private readonly ILossRecovery _recovery;
    private readonly SackScoreboard _scoreboard = new();
    private ISendHost? _host;

    public TcpConnection(TcpLayer layer, ConnectionId id, ITcpConnectionObserver? observer)
    {
        _layer = layer;
        _settings = layer.Settings;
        Id = id;
        Observer = observer;
        _receive = new ReceiveBuffer(_settings.ReceiveBufferSize, _settings.MaxOutOfOrderRanges);
        _rtt = new RttEstimator(Micros(_settings.InitialRto), Micros(_settings.MinRto), Micros(_settings.MaxRto));
        _congestion = _settings.CongestionControl();
        _recovery = _settings.LossRecovery();
        _recovery.Attach(this);
        IdentifyMode = _settings.IdentifyMode;

        // RFC 7323 §2.3: the smallest shift that lets the whole buffer be advertised.
        while (_settings.WindowScaling && (_settings.ReceiveBufferSize >> _receiveWindowShift) > ushort.MaxValue && _receiveWindowShift < 14)
        {
            _receiveWindowShift++;
        }
    }

    public ConnectionId Id { get; }

    public TcpState State { get; private set; } = TcpState.Closed;

    public ITcpConnectionObserver? Observer { get; set; }

    public TcpListenerCore? Listener { get; set; }

    public IdentifyMode IdentifyMode { get; set; }

    public TcpConnectionStatistics Statistics { get; } = new();

    /// <summary>Set once the connection failed; every later operation fails with it.</summary>
    public TcpConnectionException? Error { get; private set; }

    // RFC 9293 §3.3.1 send sequence variables.
    public uint InitialSendSequence { get; private set; }

    public uint SendUnacknowledged { get; private set; }

    public uint SendNext { get; private set; }

    public uint SendMax { get; private set; }

    private uint _sendWindow;
    private uint _maxSendWindow;
    private uint _sendWl1;
    private uint _sendWl2;
    private int _sendWindowShift;

    // Receive sequence variables.
    public uint InitialReceiveSequence { get; private set; }

    public uint ReceiveNext { get; private set; }

    private readonly int _receiveWindowShift;
    private uint _advertisedRightEdge;

    // Negotiated options.
    private int _peerMss = 536;
    private bool _timestamps;
    private bool _sackPermitted;
    private bool _windowScaling;
    private uint _tsRecent;
    private uint _tsOffset;
    private uint _lastAckSent;

    /// <summary>Payload bytes per segment: the peer's MSS and our MTU, less the options every segment carries (RFC 6691).</summary>
    public int MaxSegmentSize { get; private set; } = 536;

    // Closing.
    private bool _finQueued;
    private bool _finSent;
    private uint _finSequence;
    private bool _finReceived;
    private uint _outOfOrderFin;
    private bool _hasOutOfOrderFin;

    public int ReceiveWindowShift => _receiveWindowShift;

    public long SmoothedRttMicroseconds => _rtt.SmoothedRtt;

    public long RttVarianceMicroseconds => _rtt.RttVariance;

    public bool HasRttSample => _rtt.HasSample;

    public long RtoMicroseconds => _rtt.Rto;

    public ICongestionControl CongestionControl => _congestion;

    public SackScoreboard Scoreboard => _scoreboard;

    public bool SackEnabled => _sackPermitted;

    public long MinRttMicroseconds => _rtt.MinRtt == long.MaxValue ? 0 : _rtt.MinRtt;

    /// <summary>Counts what loss recovery reports, for TCP info and the stack's metrics.</summary>
    public void Report(RecoveryEvent recoveryEvent, int count = 1)
    {
        switch (recoveryEvent)
        {
            case RecoveryEvent.FastRecovery:
                Statistics.FastRetransmits += count;
                _layer.Metrics.FastRecoveries.Add(count);
                break;
            case RecoveryEvent.TailLossProbe or RecoveryEvent.RepeatedTailLossProbe:
                Statistics.TailLossProbes += count;
                _layer.Metrics.TailLossProbes.Add(count);

                // RFC 8985 §7.3: after a loss probe the sender re-arms the RTO, not the PTO; a repeated probe leaves
                // the RTO where the first probe of the silence put it.
                if (recoveryEvent == RecoveryEvent.TailLossProbe && SendUnacknowledged != SendMax)
                {
                    ArmRetransmitTimer(NowMicroseconds);
                }

                break;
            case RecoveryEvent.SpuriousRetransmission:
                Statistics.SpuriousRetransmissions += count;
                _layer.Metrics.SpuriousRetransmissions.Add(count);
                break;
            case RecoveryEvent.Undo:
                Statistics.Undos += count;
                _layer.Metrics.Undos.Add(count);
                break;
            case RecoveryEvent.RackLoss:
                Statistics.RackLosses += count;
                break;
        }
    }

    public ILossRecovery LossRecovery => _recovery;

    public long BytesInFlight => (uint)(SendNext - SendUnacknowledged) > (uint)(SendMax - SendUnacknowledged) ? 0 : (uint)(SendNext - SendUnacknowledged);

    public long NowMicroseconds => _layer.Clock.NowMicroseconds;

    /// <summary>Bytes queued by the application and not yet acknowledged.</summary>
    public long QueuedBytes => _send.Length;

    /// <summary>In-order bytes received and not yet read by the application.</summary>
    public int ReadableBytes => _receive.Count;

    /// <summary>The peer closed its side and every byte before its FIN has been read.</summary>
    public bool IsEndOfStream => _finReceived && _receive.Count == 0;

    public bool IsSendShutdown => _finQueued;

    public int OutOfOrderRanges => _receive.RangeCount;

    public uint PeerWindow => _sendWindow;

    /// <summary>Sets who owns the bytes of the descriptors this connection sends.</summary>
    public void SetHost(ISendHost host) => _host = host;

    // ---- Application operations (engine thread) ----

    /// <summary>Active open (RFC 9293 §3.10.1): send SYN.</summary>
    public void Open()
    {
        ChooseInitialSequence();
        State = TcpState.SynSent;
        SendSyn();
    }

    /// <summary>Passive open: a SYN reached a listener (RFC 9293 §3.10.7.2).</summary>
    public void AcceptSyn(uint sequence, ushort window, in TcpOptions options)
    {
        ChooseInitialSequence();
        InitialReceiveSequence = sequence;
        ReceiveNext = sequence + 1;
        ApplySynOptions(options);

        // §3.10.7.2: the SYN's (never scaled) window is the first send window; WL1/WL2 start from it.
        UpdateSendWindow(sequence, InitialSendSequence, window, isSyn: true);
        State = TcpState.SynReceived;
        SendSyn();
    }

    /// <summary>ISS by RFC 6528, the timestamp offset, and the options we offer in our SYN.</summary>
    private void ChooseInitialSequence()
    {
        var now = NowMicroseconds;
        InitialSendSequence = _layer.Isn.Next(now, Id.LocalAddress, Id.LocalPort, Id.RemoteAddress, Id.RemotePort);
        _tsOffset = _layer.Isn.TimestampOffset(Id.LocalAddress, Id.LocalPort, Id.RemoteAddress, Id.RemotePort);
        InitSendSequence();
        _timestamps = _settings.Timestamps;
        _windowScaling = _settings.WindowScaling;
        _sackPermitted = _settings.Sack;
    }

    /// <summary>Queues a descriptor of the host's memory. The host learns its fate through Acknowledged or Failed.</summary>
    public void Enqueue(nint address, int length, long hostToken, long hostTag)
    {
        var d = _send.Rent();
        d.Address = address;
        d.Length = length;
        d.HostToken = hostToken;
        d.HostTag = hostTag;
        if (Error is not null || _finQueued || State is TcpState.Closed or TcpState.Listen or TcpState.TimeWait)
        {
            _host!.Failed(d, Error ?? new TcpConnectionException(TcpError.Aborted, $"Connection {Id} is closed for sending."));
            d.Reset();
            return;
        }

        _send.Append(d);
        _layer.MarkForOutput(this);
    }

    /// <summary>Copies readable bytes out; returns how many. Opens the window again when it has grown enough.</summary>
    public int Read(Span<byte> destination)
    {
        var n = _receive.Read(destination);
        if (n > 0 && ShouldSendWindowUpdate())
        {
            _ackNow = true;
            _layer.MarkForOutput(this);
        }

        return n;
    }

    /// <summary>Half-close (RFC 9293 §3.10.4): FIN after every queued byte.</summary>
    public void ShutdownSend()
    {
        if (_finQueued || Error is not null)
        {
            return;
        }

        switch (State)
        {
            case TcpState.SynSent:
            case TcpState.Listen:
                Terminate(null);
                return;
            case TcpState.SynReceived:
            case TcpState.Established:
            case TcpState.CloseWait:
                _finQueued = true;
                _layer.MarkForOutput(this);
                return;
            default:
                return;
        }
    }

    /// <summary>Abort (RFC 9293 §3.10.5): RST to the peer, every pending operation fails.</summary>
    public void Abort()
    {
        if (State is TcpState.SynReceived or TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2 or TcpState.CloseWait)
        {
            SendReset(SendMax);
        }

        Terminate(new TcpConnectionException(TcpError.Aborted, $"Connection {Id} was aborted by the application."));
    }

    /// <summary>
    /// The engine caught <paramref name="exception"/> while serving this connection: abort it (RST, RFC 9293 §3.10.5) so
    /// that its application sees the failure, with the exception inside, through its pending or next operation.
    /// </summary>
    public void FailFromException(Exception exception)
    {
        if (State == TcpState.Closed)
        {
            return;
        }

        _pendingFailure = new TcpConnectionException(TcpError.Aborted, $"Connection {Id} was aborted: the engine caught an exception while serving it ({exception.GetType().Name}: {exception.Message}).", exception);
        ApplyPendingFailure();
    }

    /// <summary>The stack stops: fail everything without a word on the wire unless we can say RST.</summary>
    public void Shutdown(TcpConnectionException error)
    {
        if (State is TcpState.SynReceived or TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2 or TcpState.CloseWait or TcpState.Closing or TcpState.LastAck)
        {
            SendReset(SendMax);
        }

        Terminate(error);
    }

    private void InitSendSequence()
    {
        SendUnacknowledged = InitialSendSequence;
        SendNext = InitialSendSequence;
        SendMax = InitialSendSequence;
        _smallSegmentEnd = InitialSendSequence;
        _send.Reset(InitialSendSequence + 1);
    }

    private void ApplySynOptions(in TcpOptions options)
    {
        if (options.Mss != 0)
        {
            _peerMss = options.Mss;
        }

        // RFC 7323 §2.2: scaling only when both SYNs carry the option.
        _windowScaling &= options.WindowScale >= 0;
        _sendWindowShift = _windowScaling ? options.WindowScale : 0;
        _timestamps &= options.HasTimestamp;
        if (_timestamps)
        {
            _tsRecent = options.TsVal;
        }

        _sackPermitted &= options.SackPermitted;

        var ourMss = _layer.MaxSegmentSize;
        MaxSegmentSize = Math.Max(64, Math.Min(_peerMss, ourMss) - (_timestamps ? 12 : 0));
    }

    private int EffectiveReceiveShift => _windowScaling ? _receiveWindowShift : 0;

    /// <summary>
    /// Ends the connection for good: fails pending sends (nothing is dropped silently), clears receive state,
    /// tells the application, and leaves the connection table.
    /// </summary>
    private void Terminate(TcpConnectionException? error)
    {
        if (State == TcpState.Closed && _terminated)
        {
            return;
        }

        _terminated = true;
        WasHalfOpen = State == TcpState.SynReceived && Listener is not null;
        State = TcpState.Closed;
        Error ??= error;
        CancelAllTimers();
        if (_host is not null && !_send.IsEmpty)
        {
            _send.FailAll(_host, Error ?? new TcpConnectionException(TcpError.Aborted, $"Connection {Id} closed before its data was acknowledged."));
        }

        _layer.Remove(this);
        Observer?.OnClosed(this, Error);
    }

    private bool _terminated;

    /// <summary>The connection ended while still counted in its listener's half-open backlog.</summary>
    public bool WasHalfOpen { get; private set; }

    /// <summary>Drops the connection without a word (a TIME-WAIT incarnation replaced by a new SYN).</summary>
    public void ForceClose() => Terminate(null);

    /// <summary>The path to the peer (its ARP entry) became available: send what could not be sent.</summary>
    public void OnPathAvailable()
    {
        if (!_emitBlocked)
        {
            return;
        }

        _emitBlocked = false;
        if (State is TcpState.SynSent or TcpState.SynReceived)
        {
            Emit(InitialSendSequence, State == TcpState.SynSent ? TcpFlags.Syn : TcpFlags.Syn | TcpFlags.Ack, 0, isRetransmission: false);
            return;
        }

        _ackNow = true;
        _layer.MarkForOutput(this);
    }

    private bool _emitBlocked;

    private static long Micros(TimeSpan t) => t.Ticks / 10;
}
