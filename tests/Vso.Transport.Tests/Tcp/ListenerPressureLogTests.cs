using Microsoft.Extensions.Logging;
using Vso.Transport.Tcp;

namespace Vso.Transport.Tests.Tcp;

/// <summary>Flood events at a listener become one summary line per interval with counts, never a line per SYN.</summary>
public sealed class ListenerPressureLogTests
{
    [Fact]
    public void A_flood_writes_one_summary_line_per_interval_with_the_counts_since_the_previous_line()
    {
        var log = new CapturingLogger();
        var listener = new TcpListenerCore(80, backlog: 4, maxHalfOpen: 16, observer: null);
        var pressure = listener.PressureLog;

        pressure.SynDropped(listener, log, 0);
        for (var i = 0; i < 999; i++)
        {
            pressure.SynDropped(listener, log, i);
            pressure.CookieSent(listener, log, i);
            pressure.CookieRejected(listener, log, i);
        }

        pressure.HalfOpenEvicted(listener, log, 5_000_000);
        pressure.AcceptQueueOverflow(listener, log, 5_000_000);
        Assert.Single(log.Lines);
        Assert.Equal(1L, log.Lines[0]["SynsDropped"]);

        var next = (long)(ListenerPressureLog.Interval.Ticks / 10);
        pressure.CookieAccepted(listener, log, next);
        Assert.Equal(2, log.Lines.Count);
        var summary = log.Lines[1];
        Assert.Equal(80, summary["Port"]);
        Assert.Equal(999L, summary["SynsDropped"]);
        Assert.Equal(999L, summary["CookiesSent"]);
        Assert.Equal(999L, summary["CookiesRejected"]);
        Assert.Equal(1L, summary["CookiesAccepted"]);
        Assert.Equal(1L, summary["HalfOpenEvicted"]);
        Assert.Equal(1L, summary["AcceptQueueOverflows"]);
        Assert.Equal(16, summary["MaxHalfOpen"]);
    }

    private sealed class CapturingLogger : ILogger
    {
        public List<Dictionary<string, object?>> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            Assert.Equal(5, eventId.Id);
            Assert.Contains("under SYN pressure", formatter(state, exception), StringComparison.Ordinal);
            var fields = new Dictionary<string, object?>();
            if (state is IEnumerable<KeyValuePair<string, object?>> pairs)
            {
                foreach (var (key, value) in pairs)
                {
                    fields[key] = value;
                }
            }

            Lines.Add(fields);
        }
    }
}
