using System.Runtime.CompilerServices;

namespace Vso.Transport.Tcp;

/// <summary>
/// A passive open on a port (RFC 9293 §3.10.1, LISTEN) with its two queues, as Linux keeps them: the half-open
/// queue (<see cref="HalfOpen"/>, connections in SYN-RECEIVED, at most <see cref="MaxHalfOpen"/>) and the accept
/// queue (established connections not yet accepted by the application, at most <see cref="Backlog"/>). A full
/// half-open queue is answered with SYN cookies or by dropping its oldest entry (RFC 4987 §3.6, §3.4, see
/// <see cref="TcpLayer"/>); a full accept queue drops SYNs and completing ACKs, so the peer retries later.
/// </summary>
internal sealed class TcpListenerCore
{
    /// <summary>
    /// SYN-ACK retransmissions a half-open entry gets while the half-open queue is more than half full: a flood's
    /// entries (whose SYN-ACKs nobody answers, or whose ARP never resolves) leave after seconds instead of the
    /// ~2 minutes of <see cref="TcpSettings.MaxSynRetransmissions"/> (Linux's synack_retries pruning idea).
    /// </summary>
    public const int SynAckRetriesUnderPressure = 2;

    private readonly Queue<TcpConnection> _ready = new();

    /// <summary>
    /// Established connections handed to the application side but not yet accepted by it; shared by the listeners of
    /// one port on every shard, since the application accepts from all of them through one queue.
    /// </summary>
    private readonly StrongBox<int> _awaitingAccept;

    public TcpListenerCore(ushort port, int backlog, int maxHalfOpen, ITcpListenerObserver? observer, StrongBox<int>? awaitingAccept = null)
    {
        _awaitingAccept = awaitingAccept ?? new StrongBox<int>();
        Port = port;
        Backlog = backlog;
        MaxHalfOpen = maxHalfOpen;
        Observer = observer;
    }

    public ushort Port { get; }

    /// <summary>Bound of the accept queue: established connections not yet accepted.</summary>
    public int Backlog { get; }

    /// <summary>Bound of the half-open queue (<see cref="TcpSettings.MaxHalfOpen"/>).</summary>
    public int MaxHalfOpen { get; }

    public ITcpListenerObserver? Observer { get; }

    /// <summary>Connections in SYN-RECEIVED, oldest first.</summary>
    public HalfOpenQueue HalfOpen { get; } = new();

    public int ReadyCount => _ready.Count;

    /// <summary>Established connections handed to the application side but not yet accepted by it (every shard's).</summary>
    public int AwaitingAccept => Volatile.Read(ref _awaitingAccept.Value);

    /// <summary>Engine thread: a connection was handed to the application side.</summary>
    public void HandedOver() => Interlocked.Increment(ref _awaitingAccept.Value);

    private volatile bool _silenced;

    /// <summary>
    /// Stopped taking connections but still holding the port (any thread may set it): SYNs get no answer, as if lost, so
    /// that a balancer's retry goes elsewhere or finds the next server, instead of the RST an unbound port gives.
    /// </summary>
    public bool IsSilenced
    {
        get => _silenced;
        set => _silenced = value;
    }

    /// <summary>The accept queue (ready plus handed out, not yet accepted) is at its bound.</summary>
    public bool IsAcceptQueueFull => _ready.Count + AwaitingAccept >= Backlog;

    /// <summary>The half-open queue is at its bound: a new SYN needs a cookie or an eviction.</summary>
    public bool IsHalfOpenFull => HalfOpen.Count >= MaxHalfOpen;

    /// <summary>SYN-ACK retransmissions a half-open entry may have now (<see cref="SynAckRetriesUnderPressure"/>).</summary>
    public int SynAckRetries(int configured) =>
        HalfOpen.Count > MaxHalfOpen / 2 ? Math.Min(configured, SynAckRetriesUnderPressure) : configured;

    /// <summary>When this listener last sent a SYN cookie (engine microseconds); long.MinValue when never.</summary>
    public long LastCookieSentAt { get; set; } = long.MinValue;

    /// <summary>The rate-limited summary of flood events at this listener.</summary>
    public ListenerPressureLog PressureLog { get; } = new();

    /// <summary>The application accepted a connection (any thread).</summary>
    public void TakeAccepted() => Interlocked.Decrement(ref _awaitingAccept.Value);

    public long SynsDropped { get; set; }

    public void Enqueue(TcpConnection connection) => _ready.Enqueue(connection);

    public bool TryDequeue(out TcpConnection connection)
    {
        while (_ready.TryDequeue(out connection!))
        {
            if (connection.State != TcpState.Closed)
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>The application side of a listener.</summary>
internal interface ITcpListenerObserver
{
    /// <summary>A connection completed its handshake and waits to be accepted.</summary>
    void OnConnectionReady(TcpListenerCore listener);
}
