namespace Vso.Transport.Tcp;

/// <summary>
/// A passive open on a port (RFC 9293 §3.10.1, LISTEN) with its backlog: connections still in the
/// handshake plus established ones not yet accepted may not exceed <see cref="Backlog"/>; SYNs beyond it
/// are dropped, so the peer retries later.
/// </summary>
internal sealed class TcpListenerCore
{
    private readonly Queue<TcpConnection> _ready = new();

    public TcpListenerCore(ushort port, int backlog, ITcpListenerObserver? observer)
    {
        Port = port;
        Backlog = backlog;
        Observer = observer;
    }

    public ushort Port { get; }

    public int Backlog { get; }

    public ITcpListenerObserver? Observer { get; }

    public int HalfOpen { get; set; }

    public int ReadyCount => _ready.Count;

    /// <summary>Established connections handed to the application side but not yet accepted by it.</summary>
    public int AwaitingAccept;

    public bool IsFull => HalfOpen + _ready.Count + Volatile.Read(ref AwaitingAccept) >= Backlog;

    /// <summary>The application accepted a connection (any thread).</summary>
    public void TakeAccepted() => Interlocked.Decrement(ref AwaitingAccept);

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
