using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// RSTs whose next hop has no ARP entry yet, kept until it is resolved like any segment waiting for ARP (RFC 1122
/// §2.3.2.2: a datagram to an unresolved address SHOULD be queued), instead of lost without a trace. A connection that
/// aborts is gone by then and cannot send it again, and a stateless RST has no one to repeat it. Bounded: when full the
/// oldest goes; one older than the ARP retry budget is dropped (the neighbour does not answer). Engine thread only.
/// </summary>
internal sealed class DeferredResets
{
    /// <summary>RSTs held at most (Linux's unres_qlen_bytes holds about as many small segments per neighbour).</summary>
    public const int Capacity = 16;

    /// <summary>Five ARP requests one second apart (NetworkInterface's ArpCache): a resolution that takes longer failed.</summary>
    public const long MaxAgeMicroseconds = 5_000_000;

    private readonly DeferredReset[] _items = new DeferredReset[Capacity];

    public int Count { get; private set; }

    public ref readonly DeferredReset this[int index] => ref _items[index];

    public void Add(in ConnectionId id, uint sequence, uint acknowledgment, TcpFlags flags, long now)
    {
        if (Count == Capacity)
        {
            RemoveAt(0);
        }

        _items[Count++] = new DeferredReset(id, sequence, acknowledgment, flags, now);
    }

    public void RemoveAt(int index)
    {
        Array.Copy(_items, index + 1, _items, index, Count - index - 1);
        _items[--Count] = default;
    }
}

/// <summary>A RST waiting for its next hop: the connection it answers, its sequence and acknowledgment numbers, flags and when it was made.</summary>
internal readonly record struct DeferredReset(ConnectionId Id, uint Sequence, uint Acknowledgment, TcpFlags Flags, long QueuedAt);
