using Vso.Transport.Tcp;

namespace Vso.Transport.Engine;

/// <summary>
/// A binary min-heap of connection deadlines. Each connection has at most one live entry (the deadline
/// it records in <see cref="TcpConnection.ScheduledDeadline"/>); entries that no longer match are stale
/// and skipped when they surface, so rescheduling never searches the heap.
/// </summary>
internal sealed class TimerQueue
{
    private (long Deadline, TcpConnection Connection)[] _heap = new (long, TcpConnection)[64];

    public int Count { get; private set; }

    public long NextDeadline => Count == 0 ? long.MaxValue : _heap[0].Deadline;

    /// <summary>Records the connection's current earliest deadline.</summary>
    public void Sync(TcpConnection connection)
    {
        var deadline = connection.State == TcpState.Closed ? 0 : connection.NextDeadline;
        if (deadline == connection.ScheduledDeadline)
        {
            return;
        }

        connection.ScheduledDeadline = deadline;
        if (deadline != 0)
        {
            Push(deadline, connection);
        }
    }

    /// <summary>Pops the next entry due at or before <paramref name="now"/> that is still live.</summary>
    public bool TryPopDue(long now, out TcpConnection connection)
    {
        while (Count > 0 && _heap[0].Deadline <= now)
        {
            var (deadline, c) = _heap[0];
            RemoveTop();
            if (c.ScheduledDeadline == deadline)
            {
                c.ScheduledDeadline = 0;
                connection = c;
                return true;
            }
        }

        connection = null!;
        return false;
    }

    private void Push(long deadline, TcpConnection connection)
    {
        if (Count == _heap.Length)
        {
            Array.Resize(ref _heap, _heap.Length * 2);
        }

        var i = Count++;
        while (i > 0)
        {
            var parent = (i - 1) / 2;
            if (_heap[parent].Deadline <= deadline)
            {
                break;
            }

            _heap[i] = _heap[parent];
            i = parent;
        }

        _heap[i] = (deadline, connection);
    }

    private void RemoveTop()
    {
        var last = _heap[--Count];
        _heap[Count] = default;
        if (Count == 0)
        {
            return;
        }

        var i = 0;
        while (true)
        {
            var child = (2 * i) + 1;
            if (child >= Count)
            {
                break;
            }

            if (child + 1 < Count && _heap[child + 1].Deadline < _heap[child].Deadline)
            {
                child++;
            }

            if (_heap[child].Deadline >= last.Deadline)
            {
                break;
            }

            _heap[i] = _heap[child];
            i = child;
        }

        _heap[i] = last;
    }
}
