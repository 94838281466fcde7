using Vso.Transport.Tcp;

namespace Vso.Transport.Engine;

/// <summary>
/// The connections' timers: each connection has one entry in a <see cref="TimerWheel{T}"/>, armed for its
/// earliest deadline (<see cref="TcpConnection.NextDeadline"/>) and moved in place when that changes.
/// </summary>
internal sealed class TimerQueue
{
    /// <summary>Entries kept for the next connections, at most this many (memory follows the live connections, not the peak).</summary>
    private const int MaxFreeEntries = 1024;

    private readonly TimerWheel<TcpConnection> _wheel = new();

    /// <summary>Entries of closed connections: a new connection takes one instead of allocating (issue 12, connection setup).</summary>
    private readonly Stack<TimerEntry<TcpConnection>> _free = new();

    public int Count => _wheel.Count;

    /// <summary>The earliest armed deadline (exact), or <see cref="long.MaxValue"/> when none.</summary>
    public long NextDeadline => _wheel.NextDeadline;

    /// <summary>Records the connection's current earliest deadline.</summary>
    public void Sync(TcpConnection connection)
    {
        var closed = connection.State == TcpState.Closed;
        var deadline = closed ? 0 : connection.NextDeadline;
        var entry = connection.TimerEntry;
        if (entry is null)
        {
            if (deadline == 0)
            {
                return;
            }

            entry = connection.TimerEntry = Rent(connection);
        }

        if (deadline != entry.Deadline)
        {
            if (deadline == 0)
            {
                _wheel.Cancel(entry);
            }
            else
            {
                _wheel.Arm(entry, deadline);
            }
        }

        if (closed && connection.TimerEntry == entry)
        {
            // A closed connection never arms again (a new incarnation is a new connection): its entry, out of the
            // wheel now, serves the next one.
            connection.TimerEntry = null;
            entry.Owner = null!;
            if (_free.Count < MaxFreeEntries)
            {
                _free.Push(entry);
            }
        }
    }

    private TimerEntry<TcpConnection> Rent(TcpConnection connection)
    {
        if (_free.TryPop(out var entry))
        {
            entry.Owner = connection;
            return entry;
        }

        return new TimerEntry<TcpConnection>(connection);
    }

    /// <summary>Takes the next connection with a deadline at or before <paramref name="now"/>; its entry is disarmed.</summary>
    public bool TryPopDue(long now, out TcpConnection connection)
    {
        if (_wheel.TryPopDue(now, out var entry))
        {
            connection = entry.Owner;
            return true;
        }

        connection = null!;
        return false;
    }
}
