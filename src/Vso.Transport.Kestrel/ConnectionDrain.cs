using Microsoft.Extensions.Logging;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The connections of one listener, so that a stop can drain them (Vso:DrainTimeout). Kestrel's StopAsync unbinds the
/// listener (IConnectionListener.UnbindAsync), asks each connection to close after its current request, and aborts
/// what is left at HostOptions.ShutdownTimeout. The drain starts at the unbind: each connection open then is counted
/// once, as drained when it ends or its application lets it go, as reset when the transport resets it (at the
/// drain's deadline, or because Kestrel aborted it); at the deadline every connection still open is reset.
/// </summary>
internal sealed class ConnectionDrain : IDisposable
{
    // The open connections as a list threaded through the connections themselves: no node allocated per connection.
    private readonly Lock _openLock = new();
    private VsoTransportConnection? _first;
    private readonly VsoTransportMetrics _metrics;
    private readonly ILogger _log;
    private readonly string _endPoint;
    private readonly TimeSpan _timeout;
    private Timer? _deadline;
    private int _started;
    private int _counted;
    private int _toCount = int.MaxValue;
    private int _doneLogged;
    private long _drained;
    private long _reset;

    public ConnectionDrain(VsoTransportMetrics metrics, ILogger log, string endPoint, TimeSpan timeout)
    {
        _metrics = metrics;
        _log = log;
        _endPoint = endPoint;
        _timeout = timeout;
    }

    public long Drained => Interlocked.Read(ref _drained);

    public long Reset => Interlocked.Read(ref _reset);

    /// <summary>Engine thread: a connection of this listener exists (handed over, or waiting for its PROXY header).</summary>
    public void Add(VsoTransportConnection connection)
    {
        lock (_openLock)
        {
            if (connection.InDrainList)
            {
                return;
            }

            connection.InDrainList = true;
            connection.DrainPrevious = null;
            connection.DrainNext = _first;
            if (_first is not null)
            {
                _first.DrainPrevious = connection;
            }

            _first = connection;
        }
    }

    /// <summary>Any thread: the connection ended or was let go by its application.</summary>
    public void Remove(VsoTransportConnection connection)
    {
        lock (_openLock)
        {
            if (!connection.InDrainList)
            {
                return;
            }

            connection.InDrainList = false;
            if (connection.DrainPrevious is { } previous)
            {
                previous.DrainNext = connection.DrainNext;
            }
            else
            {
                _first = connection.DrainNext;
            }

            if (connection.DrainNext is { } next)
            {
                next.DrainPrevious = connection.DrainPrevious;
            }

            connection.DrainNext = null;
            connection.DrainPrevious = null;
        }
    }

    /// <summary>The open connections now, copied (the drain acts on them outside the lock: they post to their engines).</summary>
    private List<VsoTransportConnection> OpenConnections()
    {
        var open = new List<VsoTransportConnection>();
        lock (_openLock)
        {
            for (var connection = _first; connection is not null; connection = connection.DrainNext)
            {
                open.Add(connection);
            }
        }

        return open;
    }

    /// <summary>Any thread, once (the unbind): every connection open now is draining; the deadline is armed.</summary>
    public void Start(string newConnections)
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            return;
        }

        var count = 0;
        foreach (var connection in OpenConnections())
        {
            if (connection.BeginDrain(this))
            {
                count++;
            }
        }

        _log.DrainStarted(_endPoint, count, _timeout, newConnections);
        _deadline = new Timer(static state => ((ConnectionDrain)state!).OnDeadline(), this, _timeout, Timeout.InfiniteTimeSpan);
        Volatile.Write(ref _toCount, count);
        if (Volatile.Read(ref _counted) >= count)
        {
            Done();
        }
    }

    /// <summary>Any thread: one draining connection's outcome (called once per connection by the connection).</summary>
    public void Count(bool reset)
    {
        if (reset)
        {
            Interlocked.Increment(ref _reset);
            _metrics.ConnectionsReset.Add(1);
        }
        else
        {
            Interlocked.Increment(ref _drained);
            _metrics.ConnectionsDrained.Add(1);
        }

        if (Interlocked.Increment(ref _counted) >= Volatile.Read(ref _toCount))
        {
            Done();
        }
    }

    private void Done()
    {
        if (Interlocked.Exchange(ref _doneLogged, 1) == 0)
        {
            _deadline?.Dispose();
            _log.DrainDone(_endPoint, Drained, Reset);
        }
    }

    private void OnDeadline()
    {
        var left = 0;
        foreach (var connection in OpenConnections())
        {
            if (connection.ResetForDrain())
            {
                left++;
            }
        }

        if (left > 0)
        {
            _log.DrainDeadline(_endPoint, _timeout, left);
        }
    }

    public void Dispose() => _deadline?.Dispose();
}
