using Vso.Transport.Tcp;

namespace Vso.Transport.Engine;

/// <summary>
/// The connections' timers: each connection has one entry in a <see cref="TimerWheel{T}"/>, armed for its
/// earliest deadline (<see cref="TcpConnection.NextDeadline"/>) and moved in place when that changes.
/// </summary>
internal sealed class TimerQueue
{
    private readonly TimerWheel<TcpConnection> _wheel = new();

    public int Count => _wheel.Count;

    /// <summary>The earliest armed deadline (exact), or <see cref="long.MaxValue"/> when none.</summary>
    public long NextDeadline => _wheel.NextDeadline;

    /// <summary>Records the connection's current earliest deadline.</summary>
    public void Sync(TcpConnection connection)
    {
        var deadline = connection.State == TcpState.Closed ? 0 : connection.NextDeadline;
        var entry = connection.TimerEntry;
        if (entry is null)
        {
            if (deadline == 0)
            {
                return;
            }

            entry = connection.TimerEntry = new TimerEntry<TcpConnection>(connection);
        }

        if (deadline == entry.Deadline)
        {
            return;
        }

        if (deadline == 0)
        {
            _wheel.Cancel(entry);
        }
        else
        {
            _wheel.Arm(entry, deadline);
        }
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
