namespace Vso.Transport.Benchmarks;

/// <summary>
/// The engine's timer queue before the timer wheel (a binary min-heap that pushes a new entry at every
/// re-arm and drops stale ones when they surface), kept as the baseline of <see cref="TimerBenchmarks"/>.
/// Unchanged but for the owner: a <see cref="TimerBenchOwner"/> in place of the TCP connection.
/// </summary>
internal sealed class HeapTimerQueueBaseline
{
    private (long Deadline, TimerBenchOwner Connection)[] _heap = new (long, TimerBenchOwner)[64];

    public int Count { get; private set; }

    public long NextDeadline => Count == 0 ? long.MaxValue : _heap[0].Deadline;

    /// <summary>Records the connection's current earliest deadline.</summary>
    public void Sync(TimerBenchOwner connection)
    {
        var deadline = connection.NextDeadline;
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
    public bool TryPopDue(long now, out TimerBenchOwner connection)
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

    private void Push(long deadline, TimerBenchOwner connection)
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
