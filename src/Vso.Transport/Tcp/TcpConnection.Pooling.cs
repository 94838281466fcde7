namespace Vso.Transport.Tcp;

/// <summary>
/// Reuse (issue 12 item 4): a connection whose owner let go (<see cref="ReleaseByOwner"/>, the endpoint's Release) and
/// which has ended goes back to its layer's bounded pool, and the next passive open takes it instead of building a
/// connection, a sender, a receiver and their parts. <see cref="TryRecycle"/> puts back every field a new connection
/// starts from; <see cref="Generation"/> counts the reuses, so a holder of the old connection can tell it is gone.
/// </summary>
internal sealed partial class TcpConnection
{
    private bool _ownerReleased;

    /// <summary>The incarnation: changes each time the pool hands the object to a new connection.</summary>
    public int Generation { get; private set; }

    /// <summary>The connection has ended for good (Terminate ran).</summary>
    public bool IsTerminated => _terminated;

    /// <summary>Whether the layer has been told it may reuse the connection (its owner let go).</summary>
    internal bool IsOwnerReleased => _ownerReleased;

    /// <summary>Engine thread: the owner holds no more reference it will use; once ended, the connection may be reused.</summary>
    public void ReleaseByOwner()
    {
        if (_ownerReleased)
        {
            return;
        }

        _ownerReleased = true;
        Observer = null;
        if (_terminated)
        {
            _layer.Retire(this);
        }
    }

    /// <summary>
    /// Engine thread, the layer's pool only: the connection, ended and out of every engine structure, starts again as a
    /// new connection <paramref name="id"/> that shares the layer's settings. False when it cannot be reused: settings of its
    /// own or since changed, or memory still held (the garbage collector takes it then).
    /// </summary>
    public bool TryRecycle(ConnectionId id, TcpSettings shared)
    {
        if (!_terminated || _ownsSettings || !ReferenceEquals(_settings, shared) || TimerEntry is not null || HalfOpenEntry is not null || !_sender.IsQueueEmpty)
        {
            return false;
        }

        if (!_receiver.TryRecycle(_settings))
        {
            return false;
        }

        _sender.Recycle(_settings);
        Statistics.Recycle();
        Generation++;
        Id = id;
        State = TcpState.Closed;
        Observer = null;
        Listener = null;
        IdentifyMode = _settings.IdentifyMode;
        Error = null;
        _peerMss = 536;
        _timestamps = false;
        _sackPermitted = false;
        _windowScaling = false;
        _tsRecent = 0;
        _tsOffset = 0;
        _lastAckSent = default;
        MaxSegmentSize = 536;
        _terminated = false;
        WasHalfOpen = false;
        _emitBlocked = false;
        _softError = default;
        _softErrorText = null;
        _challengeAckLimit = default;
        _invalidSegmentAckLimit = default;
        _lingerDeadline = 0;
        SendWatcher = null;
        IsReceiveShutdown = false;
        _synLeft = false;
        _pendingFailure = null;
        _keepaliveDeadline = 0;
        _keepaliveProbesSent = 0;
        _lastReceivedAt = 0;
        _ownerReleased = false;
        InitializeReplyLimits(_layer.Clock.NowMicroseconds);
        return true;
    }
}
