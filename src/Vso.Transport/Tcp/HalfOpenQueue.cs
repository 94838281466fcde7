namespace Vso.Transport.Tcp;

/// <summary>
/// A listener's half-open connections (SYN-RECEIVED) in the order their SYNs arrived, so that the oldest can be
/// dropped to admit a new SYN when the queue is full and cookies are off (RFC 4987 §3.4). Each connection carries
/// its own list node (<see cref="TcpConnection.HalfOpenEntry"/>): adding and removing are O(1) and allocate nothing
/// beyond that node. Engine thread only.
/// </summary>
internal sealed class HalfOpenQueue
{
    private readonly LinkedList<TcpConnection> _entries = new();

    public int Count => _entries.Count;

    /// <summary>The entry whose SYN arrived first, or null when empty.</summary>
    public TcpConnection? Oldest => _entries.First?.Value;

    public void Add(TcpConnection connection)
    {
        connection.HalfOpenEntry ??= new LinkedListNode<TcpConnection>(connection);
        _entries.AddLast(connection.HalfOpenEntry);
    }

    /// <summary>Removes the connection if it is here (idempotent: it leaves at establishment or at its end, whichever comes first).</summary>
    public void Remove(TcpConnection connection)
    {
        if (connection.HalfOpenEntry is { } entry && entry.List == _entries)
        {
            _entries.Remove(entry);
        }
    }
}
