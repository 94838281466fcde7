namespace Vso.Transport.Kestrel;

/// <summary>
/// A listener's pool of per-connection state (<see cref="ConnectionOperations"/> with its input pump and pipe, writer and
/// send host), so that a new connection reuses what an ended one left instead of allocating it (issue 12 item 4). Bounded
/// like Kestrel's Sockets transport bounds its pooled senders (SocketSenderPool keeps at most 1024): beyond the cap a
/// returned set is left to the garbage collector, so memory follows the connections alive at once, not every peer seen.
/// Every engine (shard) of the listener rents and returns, hence the lock.
/// </summary>
internal sealed class ConnectionStatePool(PinnedBlockClasses blocks, VsoTransportOptions options)
{
    /// <summary>At most this many idle sets are kept.</summary>
    public const int Capacity = 1024;

    private readonly Lock _lock = new();
    private readonly Stack<ConnectionOperations> _idle = new();

    /// <summary>Idle sets held now (tests).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _idle.Count;
            }
        }
    }

    /// <summary>Sets built because none was idle (tests).</summary>
    public long Created { get; private set; }

    /// <summary>Engine thread: an idle set, or a new one.</summary>
    public ConnectionOperations Rent()
    {
        lock (_lock)
        {
            if (_idle.TryPop(out var state))
            {
                return state;
            }

            Created++;
        }

        return new ConnectionOperations(this, blocks, options);
    }

    /// <summary>Engine thread: a reset set; kept if there is room.</summary>
    public void Return(ConnectionOperations state)
    {
        lock (_lock)
        {
            if (_idle.Count < Capacity)
            {
                _idle.Push(state);
            }
        }
    }
}
