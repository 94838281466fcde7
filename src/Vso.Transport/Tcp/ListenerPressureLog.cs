using Microsoft.Extensions.Logging;
using Vso.Transport.Engine;

namespace Vso.Transport.Tcp;

/// <summary>
/// The events a SYN flood causes at one listener (SYNs dropped, cookies sent, accepted and rejected, half-open
/// entries evicted, completing ACKs dropped), counted and reported as one summary line per
/// <see cref="Interval"/>: a peer decides how often they happen, so none of them may write a line each
/// (<see cref="LogRateLimiter"/>). Nothing is formatted unless a line is written. Engine thread only.
/// </summary>
internal sealed class ListenerPressureLog
{
    /// <summary>At most one summary line per listener in this time.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private readonly LogRateLimiter _limiter = new(Interval);
    private long _synsDropped;
    private long _cookiesSent;
    private long _cookiesAccepted;
    private long _cookiesRejected;
    private long _halfOpenEvicted;
    private long _acceptQueueOverflows;

    public void SynDropped(TcpListenerCore listener, ILogger log, long now)
    {
        _synsDropped++;
        Report(listener, log, now);
    }

    public void CookieSent(TcpListenerCore listener, ILogger log, long now)
    {
        _cookiesSent++;
        Report(listener, log, now);
    }

    public void CookieAccepted(TcpListenerCore listener, ILogger log, long now)
    {
        _cookiesAccepted++;
        Report(listener, log, now);
    }

    public void CookieRejected(TcpListenerCore listener, ILogger log, long now)
    {
        _cookiesRejected++;
        Report(listener, log, now);
    }

    public void HalfOpenEvicted(TcpListenerCore listener, ILogger log, long now)
    {
        _halfOpenEvicted++;
        Report(listener, log, now);
    }

    public void AcceptQueueOverflow(TcpListenerCore listener, ILogger log, long now)
    {
        _acceptQueueOverflows++;
        Report(listener, log, now);
    }

    /// <summary>Writes the counts gathered since the previous line, if the interval allows a line now.</summary>
    private void Report(TcpListenerCore listener, ILogger log, long now)
    {
        if (!_limiter.TryAcquire(now, out _))
        {
            return;
        }

        log.ListenerUnderPressure(
            listener.Port, _synsDropped, listener.Backlog, _cookiesSent, _cookiesAccepted, _cookiesRejected,
            _halfOpenEvicted, _acceptQueueOverflows, listener.HalfOpen.Count, listener.MaxHalfOpen);
        _synsDropped = 0;
        _cookiesSent = 0;
        _cookiesAccepted = 0;
        _cookiesRejected = 0;
        _halfOpenEvicted = 0;
        _acceptQueueOverflows = 0;
    }
}
