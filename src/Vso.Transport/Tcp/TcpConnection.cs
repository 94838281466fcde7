using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// One TCP connection: the RFC 9293 state machine over a <see cref="TcpSender"/> (SND.*, the host's
/// <see cref="SendDescriptor"/>s, ACK processing, loss recovery) and a <see cref="TcpReceiver"/> (RCV.*, the
/// <see cref="ReceiveBuffer"/>, SACK blocks, delayed ACKs). Everything here runs on the engine thread; the
/// application reaches it through commands the engine applies (see Api/).
/// This file holds the connection's own state (state, negotiated options, timestamps) and the application's
/// operations; TcpConnection.Input.cs the SEGMENT ARRIVES state machine, TcpConnection.Output.cs the building of
/// segments, TcpConnection.Timers.cs timer dispatch.
/// </summary>
internal sealed partial class TcpConnection
{
    private readonly TcpLayer _layer;
    private readonly TcpSender _sender;
    private readonly TcpReceiver _receiver;

    /// <summary>The settings: the layer's shared copy until the application changes this connection's (<see cref="Reconfigure"/>).</summary>
    private TcpSettings _settings;

    /// <summary>Whether <see cref="_settings"/> is this connection's own copy, which it may change.</summary>
    private bool _ownsSettings;

    /// <param name="settings">The connection's own settings (an active open's, already copied); null shares the stack's current copy.</param>
    public TcpConnection(TcpLayer layer, ConnectionId id, ITcpConnectionObserver? observer, TcpSettings? settings = null)
    {
        _layer = layer;
        _settings = settings ?? layer.SharedSettings();
        _ownsSettings = settings is not null;
        Id = id;
        Observer = observer;
        _receiver = new TcpReceiver(this, layer, _settings);
        _sender = new TcpSender(this, layer, _settings);
        IdentifyMode = _settings.IdentifyMode;
        InitializeReplyLimits(layer.Clock.NowMicroseconds);
    }

    public ConnectionId Id { get; private set; }

    public TcpState State { get; private set; } = TcpState.Closed;

    public ITcpConnectionObserver? Observer { get; set; }

    public TcpListenerCore? Listener { get; set; }

    public IdentifyMode IdentifyMode { get; set; }

    public TcpConnectionStatistics Statistics { get; } = new();

    /// <summary>Set once the connection failed; every later operation fails with it.</summary>
    public TcpConnectionException? Error { get; private set; }

    /// <summary>The send side: SND.*, the send queue, ACK processing, RTT, congestion control and loss recovery.</summary>
    public TcpSender Sender => _sender;

    /// <summary>The receive side: RCV.*, the reassembly buffer, SACK blocks to report, delayed ACKs.</summary>
    public TcpReceiver Receiver => _receiver;

    /// <summary>RCV.NXT (for TIME-WAIT reuse).</summary>
    public uint ReceiveNext => _receiver.Next.Value;

    // Negotiated options (RFC 9293 §3.7.1 MSS, RFC 7323 window scale and timestamps, RFC 2018 SACK-permitted).
    // Timestamps stay here rather than in a type of their own: both directions use them (PAWS and TS.Recent on
    // input, TSval/TSecr in every segment built, RTT and Eifel on the send side), and they are the outcome of
    // the handshake this type negotiates.
    private int _peerMss = 536;
    private bool _timestamps;
    private bool _sackPermitted;
    private bool _windowScaling;
    private uint _tsRecent;
    private uint _tsOffset;

    /// <summary>RCV.NXT as carried by the last ACK we sent (Last.ACK.sent, RFC 7323 §4.3).</summary>
    private SeqNum _lastAckSent;

    /// <summary>Payload bytes per segment: the peer's MSS and our MTU, less the options every segment carries (RFC 6691).</summary>
    public int MaxSegmentSize { get; private set; } = 536;

    public long NowMicroseconds => _layer.Clock.NowMicroseconds;

    /// <summary>In-order bytes received and not yet read by the application.</summary>
    public int ReadableBytes => _receiver.ReadableBytes;

    /// <summary>The peer closed its side and every byte before its FIN has been read.</summary>
    public bool IsEndOfStream => _receiver.IsEndOfStream;

    /// <summary>Sets who owns the bytes of the descriptors this connection sends.</summary>
    public void SetHost(ISendHost host) => _sender.Host = host;

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
        _receiver.OnSyn(new SeqNum(sequence));
        ApplySynOptions(options);

        // §3.10.7.2: the SYN's (never scaled) window is the first send window; WL1/WL2 start from it.
        _sender.UpdateSendWindow(new SeqNum(sequence), _sender.InitialSendSequence, window, isSyn: true);
        State = TcpState.SynReceived;
        SendSyn();
    }

    /// <summary>
    /// Passive open from a returning SYN cookie (RFC 4987 §3.6): the connection starts in SYN-RECEIVED as if it had
    /// sent its SYN-ACK (the listener did, statelessly); the ACK that carried the cookie then completes it through
    /// the ordinary path. The options are those the cookie preserved; TS.Recent is the ACK's TSval (as Linux does).
    /// </summary>
    public void AcceptCookie(in CookieHandshake cookie)
    {
        _sender.Initialize(new SeqNum(cookie.Iss));
        _tsOffset = _layer.Isn.TimestampOffset(Id.LocalAddress, Id.LocalPort, Id.RemoteAddress, Id.RemotePort);
        _timestamps = _settings.Timestamps;
        _windowScaling = _settings.WindowScaling;
        _sackPermitted = _settings.Sack;
        _receiver.OnSyn(new SeqNum(cookie.PeerIsn));

        var options = TcpOptions.None;
        options.Mss = (ushort)cookie.Mss;
        options.WindowScale = (sbyte)cookie.PeerWindowScale;
        options.SackPermitted = cookie.SackPermitted;
        options.HasTimestamp = cookie.Timestamps;
        options.TsVal = cookie.TsVal;
        ApplySynOptions(options);

        // The SYN's window is not known: start from none; the ACK's window (scaled, §3.10.7.4) replaces it.
        _sender.UpdateSendWindow(new SeqNum(cookie.PeerIsn), _sender.InitialSendSequence, 0, isSyn: true);
        _sender.OnSynSending();
        _lastAckSent = _receiver.Next;
        State = TcpState.SynReceived;
    }

    /// <summary>This connection's place in its listener's half-open queue (<see cref="HalfOpenQueue"/>).</summary>
    internal LinkedListNode<TcpConnection>? HalfOpenEntry { get; set; }

    /// <summary>ISS by RFC 6528, the timestamp offset, and the options we offer in our SYN.</summary>
    private void ChooseInitialSequence()
    {
        var now = NowMicroseconds;
        _sender.Initialize(new SeqNum(_layer.Isn.Next(now, Id.LocalAddress, Id.LocalPort, Id.RemoteAddress, Id.RemotePort)));
        _tsOffset = _layer.Isn.TimestampOffset(Id.LocalAddress, Id.LocalPort, Id.RemoteAddress, Id.RemotePort);
        _timestamps = _settings.Timestamps;
        _windowScaling = _settings.WindowScaling;
        _sackPermitted = _settings.Sack;
    }

    /// <summary>Queues a descriptor of the host's memory. The host learns its fate through Acknowledged or Failed.</summary>
    public void Enqueue(nint address, int length, long hostToken, long hostTag)
    {
        if (Error is not null || _sender.IsFinQueued || State is TcpState.Closed or TcpState.Listen or TcpState.TimeWait)
        {
            _sender.Refuse(address, length, hostToken, hostTag, Error ?? new TcpConnectionException(TcpError.Aborted, $"Connection {Id} is closed for sending."));
            return;
        }

        _sender.Enqueue(address, length, hostToken, hostTag);
    }

    /// <summary>Copies readable bytes out; returns how many. Opens the window again when it has grown enough.</summary>
    public int Read(Span<byte> destination) => _receiver.Read(destination);

    /// <summary>Half-close (RFC 9293 §3.10.4): FIN after every queued byte.</summary>
    public void ShutdownSend()
    {
        if (_sender.IsFinQueued || Error is not null)
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
                _sender.QueueFin();
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
            SendReset(_sender.SendMax.Value);
        }

        _receiver.Clear(); // nobody will read them: the blocks go back to the pool
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
            SendReset(_sender.SendMax.Value);
        }

        Terminate(error);
    }

    private void ApplySynOptions(in TcpOptions options)
    {
        if (options.Mss != 0)
        {
            _peerMss = options.Mss;
        }

        // RFC 7323 §2.2: scaling only when both SYNs carry the option.
        _windowScaling &= options.WindowScale >= 0;
        _sender.SetPeerWindowShift(_windowScaling ? options.WindowScale : 0);
        _timestamps &= options.HasTimestamp;
        if (_timestamps)
        {
            _tsRecent = options.TsVal;
        }

        _sackPermitted &= options.SackPermitted;

        var ourMss = AnnouncedMss;
        MaxSegmentSize = Math.Max(64, Math.Min(_peerMss, ourMss) - (_timestamps ? 12 : 0));
        _sender.ChooseLossRecovery(_sackPermitted);
    }

    /// <summary>The shift of the windows we advertise: ours when both SYNs carried the option (RFC 7323 §2.2), else none.</summary>
    private int EffectiveReceiveShift => _windowScaling ? _receiver.WindowShift : 0;

    /// <summary>Both sides agreed on SACK (RFC 2018).</summary>
    internal bool SackPermitted => _sackPermitted;

    /// <summary>Both SYNs carried timestamps (RFC 7323 §3.2): every segment carries them.</summary>
    internal bool TimestampsEnabled => _timestamps;

    /// <summary>Asks the engine to run this connection's output at the end of the current turn.</summary>
    internal void RequestOutput() => _layer.MarkForOutput(this);

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
        if (!_sender.IsQueueEmpty)
        {
            _sender.FailAll(Error ?? new TcpConnectionException(TcpError.Aborted, $"Connection {Id} closed before its data was acknowledged."));
        }

        _layer.Remove(this);
        Observer?.OnClosed(this, Error);
        if (_ownerReleased)
        {
            // Its owner let go before the end: the connection can serve another (TcpConnection.Pooling.cs).
            _layer.Retire(this);
        }
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
            EmitSyn();
            return;
        }

        _receiver.RequestAck();
    }

    private bool _emitBlocked;

    /// <summary>Sends what the windows, Nagle and the state allow, then an ACK if one is still owed.</summary>
    public void Output()
    {
        if (State is TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck)
        {
            _sender.OutputData();
        }

        if (_receiver.AckOwed && State is not (TcpState.Closed or TcpState.Listen or TcpState.SynSent))
        {
            SendAck();
        }
    }

    /// <summary>Our FIN left (RFC 9293 §3.10.4): ESTABLISHED goes to FIN-WAIT-1, CLOSE-WAIT to LAST-ACK.</summary>
    internal void OnFinSent()
    {
        State = State switch
        {
            TcpState.Established => TcpState.FinWait1,
            TcpState.CloseWait => TcpState.LastAck,
            _ => State,
        };
    }

    private static long Micros(TimeSpan t) => t.Ticks / 10;
}
