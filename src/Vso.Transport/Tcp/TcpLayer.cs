using System.Security.Cryptography;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Vso.Transport.Engine;
using Vso.Transport.Interface;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// The TCP layer of one stack: demultiplexes segments to connections and listeners, answers segments
/// that match nothing with RST (RFC 9293 §3.10.7.1), and runs connection output and timers. Receives through the
/// interface's demultiplexer (<see cref="ITransportProtocol"/>) and sends through its <see cref="IIpOutput"/>.
/// Engine thread only, except the listener table which applications bind to from any thread.
/// </summary>
internal sealed class TcpLayer : ITransportProtocol
{
    private readonly Dictionary<ConnectionId, TcpConnection> _connections = [];
    private readonly ConcurrentDictionary<ushort, TcpListenerCore> _listeners = new();
    private readonly List<TcpConnection> _outputList = [];
    private readonly HashSet<TcpConnection> _outputSet = [];
    private readonly TimerQueue _timers = new();
    private readonly IIpOutput _ip;
    private readonly WireCounters _counters;
    private readonly EphemeralPortAllocator _ports;

    /// <summary>RFC 5961 §7: the stack-wide, randomised cap on challenge ACKs (null: no cap).</summary>
    private readonly RandomizedIntervalLimit? _challengeAckBudget;

    /// <summary>
    /// RSTs for segments no connection takes (RFC 9293 §3.10.7.1). A spoofed flood to closed ports would otherwise
    /// make the stack reflect one RST per segment at a victim; FreeBSD bounds these with the ICMP limit
    /// (net.inet.icmp.icmplim), and the default here, 1000/s with a burst of 100, is Linux's icmp_msgs_per_sec for
    /// the sibling signal (port unreachable): a port scan or a restarted peer's stale connections are still
    /// answered at once, an attacker gets at most about 40 KB/s of RSTs. Mutable struct: never copied.
    /// </summary>
    private TokenBucket _resetLimit;

    /// <summary>Connection lifecycle lines (peers open and close connections at will): one per second, with a count.</summary>
    private readonly LogRateLimiter _connectionLog = new(TimeSpan.FromSeconds(1));

    public TcpLayer(IIpOutput ip, WireCounters counters, TcpSettings settings, IClock clock, TcpMetrics metrics, ILogger log)
    {
        _ip = ip;
        _counters = counters;
        Settings = settings;
        Clock = clock;
        Metrics = metrics;
        Log = log;
        Isn = new IsnGenerator(settings.IsnKey);
        Memory = new MemoryBudget(settings.MemoryLimit, metrics);
        metrics.ObserveMemory(Memory);
        _cookies = new SynCookieHandshake(this);
        _timeWait = new TimeWaitTable(this);
        metrics.ObserveTimeWait(_timeWait);

        // The stack-wide challenge-ACK budget is drawn from a secret seed: an attacker who could predict it would
        // have the side channel back (CVE-2016-5696).
        _challengeAckBudget = settings.ChallengeAckLimit > 0
            ? new RandomizedIntervalLimit(settings.ChallengeAckLimit, RandomizedIntervalLimit.DefaultIntervalMicroseconds, BitConverter.ToUInt64(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8)))
            : null;
        if (settings.ResetsPerSecond > 0)
        {
            _resetLimit = TokenBucket.PerSecond(settings.ResetsPerSecond, settings.ResetBurst, clock.NowMicroseconds);
        }

        _ports = new EphemeralPortAllocator(PortSelectionKey(settings.IsnKey), settings.EphemeralPortFirst, settings.EphemeralPortLast);
    }

    /// <summary>RSTs for unknown connections held back by <see cref="TcpSettings.ResetsPerSecond"/>.</summary>
    public long ResetsSuppressed { get; private set; }

    /// <summary>Challenge ACKs held back by the stack-wide limit.</summary>
    public long ChallengeAcksSuppressed { get; private set; }

    /// <summary>RFC 5961 §7: whether the stack's budget allows one more challenge ACK now (the connection's own limit passed).</summary>
    public bool TryTakeChallengeAck(long nowMicroseconds)
    {
        if (_challengeAckBudget is null || _challengeAckBudget.TryTake(nowMicroseconds))
        {
            return true;
        }

        ChallengeAcksSuppressed++;
        Metrics.ChallengeAcksSuppressedByStack.Add(1);
        return false;
    }

    /// <summary>Stateless SYN-ACKs and the check of the ACKs that return them (RFC 4987 §3.6).</summary>
    private readonly SynCookieHandshake _cookies;

    /// <summary>The 4-tuples in TIME-WAIT, as compact entries: their connections are gone.</summary>
    private readonly TimeWaitTable _timeWait;

    /// <summary>The 4-tuples in TIME-WAIT (tests and the allocation probe look inside).</summary>
    internal TimeWaitTable TimeWait => _timeWait;

    /// <summary>The stateless handshake (cookies and their secret).</summary>
    internal SynCookieHandshake CookieHandshake => _cookies;

    /// <summary>The RFC 6056 key: random, or derived from a configured ISN key so that a given key reproduces the same ports.</summary>
    private static byte[] PortSelectionKey(byte[] isnKey) =>
        isnKey.Length == 0 ? [] : HMACSHA256.HashData(isnKey, "RFC 6056 port selection"u8)[..SipHashKey.Size];

    public TcpSettings Settings { get; }

    /// <summary>The copy of <see cref="Settings"/> that new connections share until one changes its own (copy on write).</summary>
    private TcpSettings? _sharedSettings;

    /// <summary>
    /// The settings a new connection starts from: one copy of the stack's for every connection (issue 12: not one per
    /// connection), taken again when the stack's settings changed since, so a change reaches new connections only.
    /// </summary>
    public TcpSettings SharedSettings()
    {
        if (_sharedSettings is null || !TcpSettingsComparer.Equal(_sharedSettings, Settings))
        {
            _sharedSettings = Settings.Clone();
        }

        return _sharedSettings;
    }

    public IClock Clock { get; }

    public TcpMetrics Metrics { get; }

    public ILogger Log { get; }

    public IsnGenerator Isn { get; }

    /// <summary>Receive memory of every connection, its pool and its limit.</summary>
    public MemoryBudget Memory { get; }

    /// <summary>Where segments leave: one IPv4 datagram at a time.</summary>
    public IIpOutput Ip => _ip;

    /// <summary>Where an exception escaping one connection's processing goes: it aborts that connection only.</summary>
    public EngineFaults? Faults { get; init; }

    /// <summary>This layer's shard among <see cref="ShardCount"/>: it owns the connections whose flow hashes to it.</summary>
    public int ShardIndex { get; init; }

    /// <summary>The stack's shards (1: every connection is this layer's).</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>The MSS we announce: the link MTU less IPv4 and TCP headers.</summary>
    public int MaxSegmentSize => _ip.Mtu - 40;

    /// <summary>Connections in the table and 4-tuples in TIME-WAIT.</summary>
    public int ConnectionCount => _connections.Count + _timeWait.Count;

    public long NextDeadline => Math.Min(_timers.NextDeadline, _timeWait.NextDeadline);

    public long ResetsSent { get; private set; }

    /// <summary>The connections in the table; those in TIME-WAIT are entries of <see cref="TimeWait"/> instead.</summary>
    public IEnumerable<TcpConnection> Connections => _connections.Values;

    /// <summary>Whether a listener is bound to <paramref name="port"/>.</summary>
    public bool HasListener(ushort port) => _listeners.ContainsKey(port);

    // ---- Binding (any thread for listeners) ----

    /// <summary>
    /// Binds a listener. Port 0 takes a free port of the ephemeral range (one no listener and no connection uses), as
    /// bind(2) to port 0 does; the caller must hold the engine's gate then, since the connection table is read.
    /// </summary>
    public TcpListenerCore Listen(ushort port, int backlog, ITcpListenerObserver? observer, StrongBox<int>? awaitingAccept = null)
    {
        if (port == 0)
        {
            return ListenOnFreePort(backlog, observer, awaitingAccept);
        }

        var listener = new TcpListenerCore(port, backlog, Settings.MaxHalfOpen, observer, awaitingAccept);
        if (!_listeners.TryAdd(port, listener))
        {
            throw new InvalidOperationException($"Port {port} already has a listener on {_ip.Address}; stop the other listener or choose another port.");
        }

        return listener;
    }

    private TcpListenerCore ListenOnFreePort(int backlog, ITcpListenerObserver? observer, StrongBox<int>? awaitingAccept)
    {
        var first = _ports.FirstPort;
        var count = _ports.LastPort - first + 1;
        var start = System.Security.Cryptography.RandomNumberGenerator.GetInt32(count);
        for (var i = 0; i < count; i++)
        {
            var port = (ushort)(first + ((start + i) % count));
            if (IsLocalPortUsedByConnection(port))
            {
                continue;
            }

            var listener = new TcpListenerCore(port, backlog, Settings.MaxHalfOpen, observer, awaitingAccept);
            if (_listeners.TryAdd(port, listener))
            {
                return listener;
            }
        }

        throw new InvalidOperationException($"No free port in {first}-{_ports.LastPort} on {_ip.Address} to listen on.");
    }

    /// <summary>A connection (TIME-WAIT included) uses <paramref name="port"/> locally. Engine thread (or the gate held).</summary>
    private bool IsLocalPortUsedByConnection(ushort port)
    {
        foreach (var id in _connections.Keys)
        {
            if (id.LocalPort == port)
            {
                return true;
            }
        }

        return _timeWait.UsesLocalPort(port);
    }

    public void Unlisten(TcpListenerCore listener) => _listeners.TryRemove(new KeyValuePair<ushort, TcpListenerCore>(listener.Port, listener));

    /// <summary>
    /// Active open from an ephemeral port (engine thread), chosen by RFC 6056 Algorithm 4 so that an off-path
    /// attacker cannot guess it (the ports were sequential from 49152 before).
    /// </summary>
    /// <param name="settings">The connection's own copy of the settings; null copies the stack's.</param>
    /// <param name="localPort">
    /// Bind-before-connect: this local port, refused (<see cref="InvalidOperationException"/>) when a listener or any
    /// connection, TIME-WAIT included, uses it (bind(2) without SO_REUSEADDR); 0 for an ephemeral port.
    /// </param>
    public TcpConnection Connect(Ipv4Address remote, ushort remotePort, ITcpConnectionObserver observer, TcpSettings? settings = null, ushort localPort = 0)
    {
        if (!_ip.CanReach(remote))
        {
            throw new InvalidOperationException($"No route to {remote}: it is off the subnet of {_ip.Address} and no gateway is configured.");
        }

        ushort port;
        if (localPort != 0 && ShardCount > 1 && FlowHash.ShardOf(new ConnectionId(_ip.Address, localPort, remote, remotePort), ShardCount) != ShardIndex)
        {
            // The stack opens a bound connection on the shard its flow hashes to; another shard would never see its segments.
            throw new InvalidOperationException($"Local port {localPort} towards {remote}:{remotePort} belongs to shard {FlowHash.ShardOf(new ConnectionId(_ip.Address, localPort, remote, remotePort), ShardCount)}, not {ShardIndex}.");
        }

        if (localPort != 0)
        {
            if (_listeners.ContainsKey(localPort) || IsLocalPortUsedByConnection(localPort))
            {
                throw new InvalidOperationException(
                    $"Local port {localPort} on {_ip.Address} is in use (by a listener or a connection, TIME-WAIT included); choose another, or 0 for an ephemeral port.");
            }

            port = localPort;
        }
        else if (!_ports.TryAllocate(_ip.Address, remote, remotePort, new PortInUseProbe(this), out port))
        {
            throw new InvalidOperationException(
                $"No ephemeral port left for {remote}:{remotePort}: every port of {_ports.FirstPort}-{_ports.LastPort} is in use towards it (a connection, TIME-WAIT or listener).");
        }

        var id = new ConnectionId(_ip.Address, port, remote, remotePort);
        var connection = new TcpConnection(this, id, observer, settings);
        _connections.Add(id, connection);
        connection.Open();
        _timers.Sync(connection);
        return connection;
    }

    /// <summary>
    /// A candidate 4-tuple is taken by a connection (TIME-WAIT included) or its local port by a listener; with several
    /// shards, one whose flow hashes to another shard counts as taken too, so that the connection's segments come back
    /// to this shard (about one candidate in <see cref="ShardCount"/> fits).
    /// </summary>
    private readonly struct PortInUseProbe(TcpLayer layer) : IPortInUseProbe
    {
        public bool IsInUse(in ConnectionId candidate) =>
            (layer.ShardCount > 1 && FlowHash.ShardOf(candidate, layer.ShardCount) != layer.ShardIndex)
            || layer._connections.ContainsKey(candidate) || layer._timeWait.Contains(candidate) || layer._listeners.ContainsKey(candidate.LocalPort);
    }

    // ---- Input ----

    IpProtocol ITransportProtocol.Protocol => IpProtocol.Tcp;

    void ITransportProtocol.OnDatagram(in Ipv4Packet datagram)
    {
        var status = TcpSegment.TryParse(datagram.Payload, datagram.Source, datagram.Destination, out var segment);
        if (status != WireStatus.Ok)
        {
            _counters.Drop(WireLayer.Tcp, status);
            return;
        }

        OnSegment(datagram.Source, datagram.Destination, segment);
    }

    /// <summary>
    /// An ICMP Destination Unreachable quoting one of our TCP segments (RFC 1122 §4.2.3.9): goes to the connection
    /// the quote names; a quote naming none is dropped and counted. Never throws out of the engine.
    /// </summary>
    void ITransportProtocol.OnIcmpError(in IcmpErrorMessage error)
    {
        var id = new ConnectionId(error.QuotedSource, error.QuotedSourcePort, error.QuotedDestination, error.QuotedDestinationPort);
        if (!_connections.TryGetValue(id, out var connection))
        {
            IcmpErrorsIgnored++;
            return;
        }

        try
        {
            if (!connection.OnIcmpError(error.Code, error.QuotedSequenceNumber, error.NextHopMtu, error.QuotedTotalLength))
            {
                IcmpErrorsIgnored++;
            }

            AfterEvent(connection);
        }
        catch (Exception ex) when (Faults is not null && ex is not OutOfMemoryException)
        {
            Faults.Contain(EngineEntry.LinkReceive, ex, connection);
        }
    }

    /// <summary>ICMP errors for no connection, or refused by the connection's checks (RFC 5927 §4.1: sequence number not in flight).</summary>
    public long IcmpErrorsIgnored { get; private set; }

    public void OnSegment(Ipv4Address source, Ipv4Address destination, in TcpSegment segment)
    {
        var id = new ConnectionId(destination, segment.DestinationPort, source, segment.SourcePort);
        if (_connections.TryGetValue(id, out var connection))
        {
            try
            {
                connection.OnPeerActivity(Clock.NowMicroseconds);
                connection.OnSegment(segment);
                AfterEvent(connection);
            }
            catch (Exception ex) when (Faults is not null && ex is not OutOfMemoryException)
            {
                Faults.Contain(EngineEntry.LinkReceive, ex, connection);
            }

            return;
        }

        // TIME-WAIT: a SYN that may start a new incarnation goes on to the listener, anything else is the entry's.
        if (_timeWait.Count > 0 && !_timeWait.TryReuse(id, segment) && _timeWait.OnSegment(id, segment))
        {
            return;
        }

        if (_listeners.TryGetValue(segment.DestinationPort, out var listener))
        {
            OnSegmentForListener(listener, id, segment);
            return;
        }

        SendResetForUnknown(id, segment);
    }

    /// <summary>
    /// RFC 9293 §3.10.7.2 (LISTEN): RST is ignored, an ACK is answered with RST unless it returns a valid SYN cookie,
    /// a SYN opens a connection. Two queues bound what a flood can take (RFC 4987 §3): a full accept queue drops the
    /// SYN (the peer retries), a full half-open queue answers it with a cookie (<see cref="SynCookieMode"/>) or
    /// drops the oldest half-open entry to make room (RFC 4987 §3.4).
    /// </summary>
    private void OnSegmentForListener(TcpListenerCore listener, ConnectionId id, in TcpSegment segment)
    {
        var flags = segment.Flags;
        if ((flags & TcpFlags.Rst) != 0 || listener.IsSilenced)
        {
            // A silenced listener (draining) answers nothing: the peer's SYN or cookie ACK is as good as lost.
            return;
        }

        if ((flags & TcpFlags.Ack) != 0)
        {
            if ((flags & TcpFlags.Syn) == 0 && TryCompleteCookieHandshake(listener, id, segment))
            {
                return;
            }

            SendResetFor(id, segment.AcknowledgmentNumber, 0, TcpFlags.Rst);
            return;
        }

        if ((flags & TcpFlags.Syn) == 0)
        {
            return;
        }

        if (Memory.IsExhausted)
        {
            // The stack's receive memory is spent: a new connection could not hold a byte (see RelieveMemory).
            Memory.NoteRefused();
            return;
        }

        var now = Clock.NowMicroseconds;
        if (listener.IsAcceptQueueFull)
        {
            // Linux drops SYNs while the accept queue is full, cookies or not: a connection made now would have nowhere to go.
            listener.SynsDropped++;
            Metrics.SynsDropped.Add(1);
            listener.PressureLog.SynDropped(listener, Log, now);
            return;
        }

        var mode = Settings.SynCookies;
        if (mode == SynCookieMode.Always || (mode == SynCookieMode.Auto && listener.IsHalfOpenFull))
        {
            if (_cookies.SendCookie(id, segment))
            {
                listener.LastCookieSentAt = now;
                Metrics.SynCookiesSent.Add(1);
                listener.PressureLog.CookieSent(listener, Log, now);
            }

            return;
        }

        while (listener.IsHalfOpenFull && listener.HalfOpen.Oldest is { } oldest)
        {
            // RFC 4987 §3.4: without cookies, the oldest half-open entry makes room (silently: it is most likely spoofed).
            oldest.ForceClose();
            _timers.Sync(oldest);
            Metrics.HalfOpenEvicted.Add(1);
            listener.PressureLog.HalfOpenEvicted(listener, Log, now);
        }

        var connection = NewConnection(id);
        connection.Listener = listener;
        _connections.Add(id, connection);
        listener.HalfOpen.Add(connection);
        connection.AcceptSyn(segment.SequenceNumber, segment.Window, segment.Options);
        AfterEvent(connection);
    }

    /// <summary>
    /// An ACK that matches no connection may return a SYN cookie (RFC 4987 §3.6): if it is valid the connection is
    /// built in SYN-RECEIVED and the ACK completes it; true when the ACK was consumed (also when dropped for a full
    /// accept queue). Cookies are looked for only where they can exist: in Always mode, or in Auto mode while one sent
    /// by this listener can still be alive (Linux's tcp_synq_no_recent_overflow), which keeps forgers' odds at zero otherwise.
    /// </summary>
    private bool TryCompleteCookieHandshake(TcpListenerCore listener, ConnectionId id, in TcpSegment segment)
    {
        var now = Clock.NowMicroseconds;
        var mayHoldCookie = Settings.SynCookies switch
        {
            SynCookieMode.Always => true,
            SynCookieMode.Auto => listener.LastCookieSentAt != long.MinValue && now - listener.LastCookieSentAt <= SynCookieHandshake.LifetimeMicroseconds,
            _ => false,
        };
        if (!mayHoldCookie)
        {
            return false;
        }

        if (!_cookies.TryValidate(id, segment, out var handshake))
        {
            // Answered with RST by the caller, as for any unknown connection.
            Metrics.SynCookiesRejected.Add(1);
            listener.PressureLog.CookieRejected(listener, Log, now);
            return false;
        }

        if (listener.IsAcceptQueueFull)
        {
            // As Linux: drop, keep nothing; the peer retransmits its ACK (or data) and the cookie is checked again.
            OnAcceptQueueOverflow(listener);
            return true;
        }

        var connection = NewConnection(id);
        connection.Listener = listener;
        _connections.Add(id, connection);
        connection.AcceptCookie(handshake);
        Metrics.SynCookiesAccepted.Add(1);
        listener.PressureLog.CookieAccepted(listener, Log, now);
        try
        {
            connection.OnPeerActivity(now);
            connection.OnSegment(segment);
            AfterEvent(connection);
        }
        catch (Exception ex) when (Faults is not null && ex is not OutOfMemoryException)
        {
            Faults.Contain(EngineEntry.LinkReceive, ex, connection);
        }

        return true;
    }

    /// <summary>A handshake-completing ACK was dropped because the listener's accept queue is full.</summary>
    public void OnAcceptQueueOverflow(TcpListenerCore listener)
    {
        Metrics.AcceptQueueOverflows.Add(1);
        listener.PressureLog.AcceptQueueOverflow(listener, Log, Clock.NowMicroseconds);
    }

    /// <summary>RFC 9293 §3.10.7.1: a segment for a closed port gets a RST, unless it is one.</summary>
    private void SendResetForUnknown(ConnectionId id, in TcpSegment segment)
    {
        var flags = segment.Flags;
        if ((flags & TcpFlags.Rst) != 0)
        {
            return;
        }

        if ((flags & TcpFlags.Ack) != 0)
        {
            SendResetFor(id, segment.AcknowledgmentNumber, 0, TcpFlags.Rst);
            return;
        }

        var length = (uint)segment.Payload.Length + ((flags & TcpFlags.Syn) != 0 ? 1u : 0) + ((flags & TcpFlags.Fin) != 0 ? 1u : 0);
        SendResetFor(id, 0, segment.SequenceNumber + length, TcpFlags.Rst | TcpFlags.Ack);
    }

    /// <summary>
    /// A RST (with <paramref name="flags"/>) that no connection sends: window 0, no options (RFC 9293 §3.10.7.1).
    /// Network input alone causes these, so they are rate-limited (<see cref="TcpSettings.ResetsPerSecond"/>).
    /// </summary>
    public void SendResetFor(ConnectionId id, uint sequence, uint acknowledgment, TcpFlags flags)
    {
        if (Settings.ResetsPerSecond > 0 && !_resetLimit.TryTake(Clock.NowMicroseconds))
        {
            ResetsSuppressed++;
            Metrics.ResetsSuppressed.Add(1);
            return;
        }

        if (!TryEmitReset(id, sequence, acknowledgment, flags))
        {
            DeferReset(id, sequence, acknowledgment, flags);
        }
    }

    /// <summary>
    /// A RST that could not leave because its next hop waits for ARP: sent when the neighbour is resolved
    /// (<see cref="OnNeighborResolved"/>), as any segment would be. Nothing is kept for a destination without a route.
    /// </summary>
    public void DeferReset(in ConnectionId id, uint sequence, uint acknowledgment, TcpFlags flags)
    {
        if (_ip.CanReach(id.RemoteAddress))
        {
            _deferredResets.Add(id, sequence, acknowledgment, flags, Clock.NowMicroseconds);
        }
    }

    private readonly DeferredResets _deferredResets = new();

    private bool TryEmitReset(in ConnectionId id, uint sequence, uint acknowledgment, TcpFlags flags)
    {
        var reset = TcpRepr.Empty;
        reset.SourcePort = id.LocalPort;
        reset.DestinationPort = id.RemotePort;
        reset.SequenceNumber = sequence;
        reset.AcknowledgmentNumber = acknowledgment;
        reset.Flags = flags;
        if (!_ip.TryBegin(id.RemoteAddress, IpProtocol.Tcp))
        {
            return false;
        }

        var header = _ip.Append(reset.HeaderLength);
        var headerLength = reset.Emit(header);
        TcpChecksum.Finish(header, headerLength, id.LocalAddress, id.RemoteAddress, 0, default);
        _ip.Commit();
        ResetsSent++;
        Metrics.ResetsSent.Add(1);
        return true;
    }

    // ---- Output and timers ----

    /// <summary>TCP payload the link can take as one super-segment (generic segmentation offload); 0 when it cannot.</summary>
    public int MaxOffloadPayload => _ip.MaxOffloadPayload;

    public void MarkForOutput(TcpConnection connection)
    {
        if (_outputSet.Add(connection))
        {
            _outputList.Add(connection);
        }
    }

    /// <summary>Runs output for every connection that has something to send; returns whether any did.</summary>
    public bool ProcessOutput()
    {
        if (_outputList.Count == 0)
        {
            RecycleRetired();
            return false;
        }

        // Output may mark further connections; index loop picks them up in the same pass.
        for (var i = 0; i < _outputList.Count; i++)
        {
            var connection = _outputList[i];
            _outputSet.Remove(connection);
            try
            {
                if (connection.State != TcpState.Closed)
                {
                    connection.Output();
                    connection.ApplyPendingFailure();
                }

                _timers.Sync(connection);
            }
            catch (Exception ex) when (Faults is not null && ex is not OutOfMemoryException)
            {
                Faults.Contain(EngineEntry.Output, ex, connection);
            }
        }

        _outputList.Clear();
        RecycleRetired();
        return true;
    }

    public bool RunTimers(long now)
    {
        var any = _timeWait.Expire(now);
        while (_timers.TryPopDue(now, out var connection))
        {
            any = true;
            try
            {
                connection.OnTimer(now);
                AfterEvent(connection);
            }
            catch (Exception ex) when (Faults is not null && ex is not OutOfMemoryException)
            {
                Faults.Contain(EngineEntry.Timers, ex, connection);
            }
        }

        return any;
    }

    public void AfterEvent(TcpConnection connection)
    {
        connection.ApplyPendingFailure();
        _timers.Sync(connection);
    }

    /// <summary>A neighbour became reachable: connections through it (to it, or behind it when it is the gateway) that could not send try again.</summary>
    public void OnNeighborResolved(Ipv4Address address)
    {
        var now = Clock.NowMicroseconds;
        for (var i = 0; i < _deferredResets.Count;)
        {
            var reset = _deferredResets[i];
            if (_ip.NextHop(reset.Id.RemoteAddress) != address && now - reset.QueuedAt <= DeferredResets.MaxAgeMicroseconds)
            {
                i++;
                continue;
            }

            _deferredResets.RemoveAt(i);
            if (now - reset.QueuedAt <= DeferredResets.MaxAgeMicroseconds && !TryEmitReset(reset.Id, reset.Sequence, reset.Acknowledgment, reset.Flags))
            {
                // The path refused it again: keep it (and the rest) for the next resolution.
                DeferReset(reset.Id, reset.Sequence, reset.Acknowledgment, reset.Flags);
                break;
            }
        }

        foreach (var connection in _connections.Values)
        {
            if (_ip.NextHop(connection.Id.RemoteAddress) == address)
            {
                connection.OnPathAvailable();
                _timers.Sync(connection);
            }
        }
    }

    /// <summary>
    /// The receive memory limit is reached and <paramref name="bytes"/> more are wanted: drop out-of-order data everywhere
    /// first (never acknowledged cumulatively), then reset the connections holding the most until the bytes fit. Their
    /// applications see <see cref="TcpError.MemoryLimit"/>; no acknowledged byte of a surviving connection is lost.
    /// </summary>
    public void RelieveMemory(long bytes)
    {
        foreach (var connection in _connections.Values)
        {
            if (Memory.Fits(bytes))
            {
                return;
            }

            connection.Receiver.PruneOutOfOrder();
        }

        while (!Memory.Fits(bytes))
        {
            TcpConnection? largest = null;
            foreach (var connection in _connections.Values)
            {
                if (connection.Receiver.HeldBytes > (largest?.Receiver.HeldBytes ?? 0))
                {
                    largest = connection;
                }
            }

            if (largest is null)
            {
                return;
            }

            Memory.NoteReset();
            largest.Receiver.Clear();
            largest.Shutdown(new TcpConnectionException(TcpError.MemoryLimit, $"Connection {largest.Id} was reset: the stack's receive memory limit was reached and it held the most."));
            AfterEvent(largest);
        }
    }

    // ---- Reuse of connections (issue 12 item 4) ----

    /// <summary>At most this many ended connections wait for reuse (as the transport's pool and Kestrel's Sockets senders: 1024).</summary>
    public const int ConnectionPoolCapacity = 1024;

    private readonly Stack<TcpConnection> _idleConnections = new();
    private readonly List<TcpConnection> _retired = [];

    /// <summary>Ended connections waiting for reuse (tests).</summary>
    internal int IdleConnections => _idleConnections.Count;

    /// <summary>Connections built because none waited for reuse (tests).</summary>
    internal long ConnectionsBuilt { get; private set; }

    /// <summary>
    /// A passive open's connection: one that ended and was let go, reset, or a new one. An ended connection is reused only
    /// if it shares the layer's current settings (those decide its sizes and its congestion control).
    /// </summary>
    private TcpConnection NewConnection(ConnectionId id)
    {
        var shared = SharedSettings();
        while (_idleConnections.TryPop(out var idle))
        {
            if (idle.TryRecycle(id, shared))
            {
                return idle;
            }
        }

        ConnectionsBuilt++;
        return new TcpConnection(this, id, observer: null);
    }

    /// <summary>Engine thread: an ended connection whose owner let go; it waits for the end of the turn (<see cref="RecycleRetired"/>).</summary>
    public void Retire(TcpConnection connection)
    {
        if (!_retired.Contains(connection))
        {
            _retired.Add(connection);
        }
    }

    /// <summary>
    /// End of a turn's output: nothing of the turn refers to the retired connections any more (the output list is empty).
    /// Each leaves the timer wheel and goes to the pool if it is out of the table and the pool has room.
    /// </summary>
    private void RecycleRetired()
    {
        if (_retired.Count == 0)
        {
            return;
        }

        foreach (var connection in _retired)
        {
            _timers.Sync(connection);
            if (connection.TimerEntry is null && connection.HalfOpenEntry is null
                && !(_connections.TryGetValue(connection.Id, out var current) && current == connection)
                && _idleConnections.Count < ConnectionPoolCapacity)
            {
                _idleConnections.Push(connection);
            }
        }

        _retired.Clear();
    }

    // ---- Lifecycle callbacks from connections ----

    public void OnPassiveEstablished(TcpConnection connection)
    {
        Metrics.ConnectionsOpened.Add(1);
        LogEstablished(connection);
        if (connection.Listener is { } listener)
        {
            listener.HalfOpen.Remove(connection);
            if (!_listeners.TryGetValue(listener.Port, out var current) || current != listener || listener.IsSilenced)
            {
                // The listener was unbound or silenced during the handshake.
                connection.Listener = null;
                connection.Abort();
                return;
            }

            listener.Enqueue(connection);
            listener.Observer?.OnConnectionReady(listener);
        }
    }

    public void OnActiveEstablished(TcpConnection connection)
    {
        Metrics.ConnectionsOpened.Add(1);
        LogEstablished(connection);
    }

    /// <summary>A connection enters TIME-WAIT: its entry takes over the 4-tuple, the connection leaves the table next.</summary>
    public void EnterTimeWait(TcpConnection connection, in TimeWaitEntry entry) => _timeWait.Add(connection.Id, entry);

    public void Remove(TcpConnection connection)
    {
        if (_connections.TryGetValue(connection.Id, out var current) && current == connection)
        {
            _connections.Remove(connection.Id);
        }

        if (connection.Listener is { } listener && connection.WasHalfOpen)
        {
            listener.HalfOpen.Remove(connection);
        }

        if (Log.IsEnabled(LogLevel.Debug) && _connectionLog.TryAcquire(Clock.NowMicroseconds, out var suppressed))
        {
            Log.ConnectionClosed(connection.Id, connection.Error?.Message ?? "closed", suppressed);
        }
    }

    /// <summary>Peers open connections at will: the line goes through the rate limiter, built only when written.</summary>
    private void LogEstablished(TcpConnection connection)
    {
        if (Log.IsEnabled(LogLevel.Debug) && _connectionLog.TryAcquire(Clock.NowMicroseconds, out var suppressed))
        {
            Log.ConnectionEstablished(connection.Id, suppressed);
        }
    }

    /// <summary>Fails every connection (the stack stops).</summary>
    public void ShutdownAll()
    {
        _timeWait.Clear();
        var error = new TcpConnectionException(TcpError.StackStopped, "The TCP stack stopped.");
        foreach (var connection in _connections.Values.ToArray())
        {
            connection.Shutdown(error);
        }
    }
}
