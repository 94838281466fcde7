namespace Vso.Transport.Tcp;

/// <summary>
/// What an application sets on its own connection, as socket options do: the connection's settings (the stack's
/// shared copy, taken at open, so later changes to the stack's reach no open connection; its own copy from the first
/// change on), changes to it while open, the user
/// timeout (RFC 5482), linger on close, the MSS clamp and shutting down the receiving half.
/// </summary>
internal sealed partial class TcpConnection
{
    private long _lingerDeadline;

    /// <summary>This connection's own settings (engine thread).</summary>
    public TcpSettings Settings => _settings;

    /// <summary>Told when the send side moves, while the application waits on it (null otherwise).</summary>
    public ITcpSendWatcher? SendWatcher { get; set; }

    /// <summary>The application shut down receiving: new data resets the connection.</summary>
    public bool IsReceiveShutdown { get; private set; }

    /// <summary>The MSS our SYN announces: the link's MTU less the IPv4 and TCP headers, at most the clamp (TCP_MAXSEG).</summary>
    private int AnnouncedMss => _settings.MssClamp > 0 ? Math.Min(_layer.MaxSegmentSize, _settings.MssClamp) : _layer.MaxSegmentSize;

    /// <summary>
    /// The user timeout's deadline (RFC 5482; RFC 9293 §3.8.3 R2 as the application sets it): while data or a FIN is
    /// unacknowledged in a synchronized state, the connection fails when the acknowledgments have not moved for that long.
    /// </summary>
    private long UserTimeoutDeadline =>
        _settings.UserTimeout > TimeSpan.Zero && _sender.HasUnacknowledged
        && State is TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck
            ? _sender.ProgressAt + Micros(_settings.UserTimeout)
            : 0;

    /// <summary>Applies the application's new per-connection settings to the open connection.</summary>
    public void Reconfigure(TcpSettings updated)
    {
        if (!_ownsSettings)
        {
            // Copy on write: the shared copy stays as the other connections have it.
            _settings = _settings.Clone();
            _ownsSettings = true;
        }

        var now = NowMicroseconds;
        var output = _settings.Nagle && !updated.Nagle; // as Linux's TCP_NODELAY: what Nagle held goes now
        _settings.Nagle = updated.Nagle;

        if (updated.ReceiveBufferSize != _settings.ReceiveBufferSize)
        {
            _settings.ReceiveBufferSize = updated.ReceiveBufferSize;
            _receiver.Resize(updated.ReceiveBufferSize);
        }

        if (updated.Keepalive != _settings.Keepalive || updated.KeepaliveIdle != _settings.KeepaliveIdle
            || updated.KeepaliveInterval != _settings.KeepaliveInterval || updated.KeepaliveProbes != _settings.KeepaliveProbes)
        {
            _settings.Keepalive = updated.Keepalive;
            _settings.KeepaliveIdle = updated.KeepaliveIdle;
            _settings.KeepaliveInterval = updated.KeepaliveInterval;
            _settings.KeepaliveProbes = updated.KeepaliveProbes;
            RestartKeepalive(now);
        }

        _settings.SendBufferSize = updated.SendBufferSize;
        _settings.UserTimeout = updated.UserTimeout;
        _settings.Linger = updated.Linger;
        _settings.NotSentLowWatermark = updated.NotSentLowWatermark;
        if (updated.MssClamp != _settings.MssClamp)
        {
            _settings.MssClamp = updated.MssClamp;
            ClampSegmentSize();
        }

        if (output)
        {
            RequestOutput();
        }
    }

    /// <summary>Keepalive changed on an open connection: the idle time counts from the peer's last segment (as Linux's TCP_KEEPIDLE).</summary>
    private void RestartKeepalive(long now)
    {
        if (State is not (TcpState.Established or TcpState.CloseWait or TcpState.FinWait2))
        {
            return; // armed when the connection establishes
        }

        _keepaliveProbesSent = 0;
        _keepaliveDeadline = _settings.Keepalive ? Math.Max(now, _lastReceivedAt + Micros(_settings.KeepaliveIdle)) : 0;
    }

    /// <summary>TCP_MAXSEG on an open connection: later segments are at most the clamp; what is in flight stays as sent.</summary>
    private void ClampSegmentSize()
    {
        if (_settings.MssClamp == 0 || State is TcpState.Closed or TcpState.SynSent or TcpState.Listen)
        {
            return;
        }

        var limit = Math.Max(64, _settings.MssClamp - (_timestamps ? 12 : 0));
        if (limit < MaxSegmentSize)
        {
            MaxSegmentSize = limit;
        }
    }

    /// <summary>
    /// Close with linger (SO_LINGER): zero aborts (RST, RFC 9293 §3.10.5); a positive time sends FIN after the queued
    /// data and resets the connection if the peer has not acknowledged everything by then.
    /// </summary>
    public void CloseLingering(TimeSpan linger)
    {
        if (linger == TimeSpan.Zero)
        {
            Abort();
            return;
        }

        ShutdownSend();
        if (State is TcpState.SynReceived or TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck)
        {
            _lingerDeadline = NowMicroseconds + Micros(linger);
        }
    }

    /// <summary>The lingering close is over: our FIN was acknowledged.</summary>
    private void OnFinAcknowledgedForLinger()
    {
        _lingerDeadline = 0;
        SendWatcher?.OnSendProgress();
    }

    /// <summary>
    /// Shutdown of the receiving half. Unread bytes are dropped, and, as data arriving after it would be, answered with
    /// RST: RFC 1122 §4.2.2.13 (and RFC 2525 §2.17) want the peer told that data it sent was lost, rather than
    /// acknowledged and dropped as Linux does. The sending half is untouched until then.
    /// </summary>
    public void ShutdownReceive()
    {
        if (IsReceiveShutdown)
        {
            return;
        }

        IsReceiveShutdown = true;
        if (_receiver.ReadableBytes > 0 || _receiver.OutOfOrderBytes > 0)
        {
            ResetForLostData("unread data was dropped when the application shut down receiving");
        }
    }

    /// <summary>Seventh check: data beyond RCV.NXT after the application shut down receiving.</summary>
    private void OnDataAfterReceiveShutdown() => ResetForLostData("data arrived after the application shut down receiving");

    private void ResetForLostData(string why)
    {
        if (State is TcpState.SynReceived or TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2 or TcpState.CloseWait)
        {
            SendReset(_sender.SendMax.Value);
        }

        _receiver.Clear();
        Terminate(new TcpConnectionException(TcpError.Aborted, $"Connection {Id} was reset: {why} (RFC 1122 §4.2.2.13)."));
    }

    /// <summary>The linger and user timeouts.</summary>
    private void OnOptionTimers(long now)
    {
        if (_lingerDeadline != 0 && now >= _lingerDeadline)
        {
            _lingerDeadline = 0;
            if (State is not (TcpState.TimeWait or TcpState.Closed or TcpState.SynSent))
            {
                SendReset(_sender.SendMax.Value);
            }

            _receiver.Clear();
            Terminate(new TcpConnectionException(TcpError.TimedOut, $"Connection {Id} was reset: the peer had not acknowledged everything when the linger time ran out."));
            return;
        }

        var deadline = UserTimeoutDeadline;
        if (deadline != 0 && now >= deadline)
        {
            Terminate(TimeoutError($"Connection {Id} timed out: sent data stayed unacknowledged for the user timeout of {_settings.UserTimeout.TotalMilliseconds} ms (RFC 5482)."));
        }
    }
}
