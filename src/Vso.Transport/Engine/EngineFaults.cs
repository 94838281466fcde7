using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Vso.Transport.Interface;
using Vso.Transport.Tcp;

namespace Vso.Transport.Engine;

/// <summary>
/// What the engine does with an exception that escapes one of its entries (<see cref="EngineEntry"/>): the
/// connection it was serving, if any, is aborted (its application sees the exception through its pending or
/// next operation), every other connection goes on, the counter <c>vso.engine.contained_exceptions</c> (tagged
/// with the entry) counts it, and a rate-limited log line records it. The engine never dies of one.
/// Engine thread only.
/// </summary>
internal sealed class EngineFaults
{
    /// <summary>One log line per second at most; the rest are counted into the next.</summary>
    private static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(1);

    private static readonly KeyValuePair<string, object?>[] EntryTags = CreateTags();

    private readonly Counter<long> _contained;
    private readonly LogRateLimiter _logLimit = new(LogInterval);
    private readonly NetworkInterface _interface;
    private readonly IClock _clock;
    private readonly ILogger _log;

    public EngineFaults(NetworkInterface networkInterface, IClock clock, Meter meter, ILogger log)
    {
        _interface = networkInterface;
        _clock = clock;
        _log = log;
        _contained = meter.CreateCounter<long>("vso.engine.contained_exceptions", unit: "{exception}", description: "Exceptions that escaped an entry of the engine loop and were contained.");
    }

    /// <summary>Exceptions contained so far (a healthy stack keeps 0).</summary>
    public long Count { get; private set; }

    /// <summary>The TCP layer, whose connections an exception aborts (set once the layer exists).</summary>
    public TcpLayer? Tcp { get; set; }

    /// <summary>Counts and logs <paramref name="exception"/>, then aborts <paramref name="connection"/> if it is given and still open.</summary>
    public void Contain(EngineEntry entry, Exception exception, TcpConnection? connection)
    {
        Record(entry, exception, connection);

        // A frame half built when the exception struck is not sent (nor is its lease kept).
        if (_interface.Batch.Count < _interface.Batch.Capacity)
        {
            _interface.Cancel();
        }

        if (connection is null || connection.State == TcpState.Closed)
        {
            return;
        }

        try
        {
            connection.FailFromException(exception);
            Tcp?.AfterEvent(connection);
        }
        catch (Exception again) when (again is not OutOfMemoryException)
        {
            // The abort itself met the fault again (an application callback that throws when told of the failure):
            // the connection is closed by now; count it and go on.
            Record(entry, again, connection);
        }
    }

    private void Record(EngineEntry entry, Exception exception, TcpConnection? connection)
    {
        Count++;
        _contained.Add(1, EntryTags[(int)entry]);
        if (_logLimit.TryAcquire(_clock.NowMicroseconds, out var suppressed))
        {
            _log.ExceptionContained(TagValue(entry), connection?.Id, suppressed, exception);
        }
    }

    private static KeyValuePair<string, object?>[] CreateTags()
    {
        var entries = Enum.GetValues<EngineEntry>();
        var tags = new KeyValuePair<string, object?>[entries.Length];
        foreach (var entry in entries)
        {
            tags[(int)entry] = new("vso.engine.entry", TagValue(entry));
        }

        return tags;
    }

    private static string TagValue(EngineEntry entry) => entry switch
    {
        EngineEntry.PostedWork => "posted_work",
        EngineEntry.LinkReceive => "link_receive",
        EngineEntry.Timers => "timers",
        EngineEntry.Output => "output",
        EngineEntry.LinkTransmit => "link_transmit",
        EngineEntry.Application => "application",
        _ => "engine_thread",
    };
}
