namespace Vso.Transport.Tcp;

/// <summary>
/// A listener's half-open connections (SYN-RECEIVED) in the order their SYNs arrived, so that the oldest can be
/// dropped to admit a new SYN when the queue is full and cookies are off (RFC 4987 §3.4). Each connection carries
/// its own list node (<see cref="TcpConnection.HalfOpenEntry"/>) while it is here: adding and removing are O(1), and
/// the nodes are reused. Engine thread only.
/// </summary>
internal sealed class HalfOpenQueue
{
    /// <summary>Nodes kept for the next SYNs, at most this many (a burst's nodes beyond it go to the GC).</summary>
    private const int MaxFreeNodes = 256;

    private readonly LinkedList<TcpConnection> _entries = new();

    /// <summary>Nodes of connections that left: the next half-open connection takes one (issue 12: no allocation per connection).</summary>
    private readonly Stack<LinkedListNode<TcpConnection>> _free = new();

    public int Count => _entries.Count;

    /// <summary>The entry whose SYN arrived first, or null when empty.</summary>
    public TcpConnection? Oldest => _entries.First?.Value;

    public void Add(TcpConnection connection)
    {
        if (connection.HalfOpenEntry is null)
        {
            if (_free.TryPop(out var node))
            {
                node.Value = connection;
            }
            else
            {
                node = new LinkedListNode<TcpConnection>(connection);
            }

            connection.HalfOpenEntry = node;
        }

        _entries.AddLast(connection.HalfOpenEntry);
    }

    /// <summary>Removes the connection if it is here (idempotent: it leaves at establishment or at its end, whichever comes first).</summary>
    public void Remove(TcpConnection connection)
    {
        if (connection.HalfOpenEntry is { } entry && entry.List == _entries)
        {
            // A connection is half-open once: its node goes back for the next one.
            _entries.Remove(entry);
            connection.HalfOpenEntry = null;
            entry.Value = null!;
            if (_free.Count < MaxFreeNodes)
            {
                _free.Push(entry);
            }
        }
    }
}
