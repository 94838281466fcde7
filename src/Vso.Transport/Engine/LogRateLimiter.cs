namespace Vso.Transport.Engine;

/// <summary>
/// Lets one kind of log line through at most once per interval and counts the ones held back, which the next
/// line that goes through reports: input from the network (which a peer controls) becomes one summary per
/// interval with a count. Callers build the message only when <see cref="TryAcquire"/> says yes, so a line
/// that is not logged costs no string. One thread (the engine's).
/// </summary>
internal sealed class LogRateLimiter
{
    private readonly long _intervalMicroseconds;
    private long _nextAllowed = long.MinValue;

    public LogRateLimiter(TimeSpan interval)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(interval, TimeSpan.Zero);
        _intervalMicroseconds = interval.Ticks / TimeSpan.TicksPerMicrosecond;
    }

    /// <summary>Lines held back since the last one that went through.</summary>
    public long Suppressed { get; private set; }

    /// <summary>
    /// Whether a line may be written at <paramref name="nowMicroseconds"/>; if so, <paramref name="suppressed"/> is the
    /// number held back since the previous line (to report in this one), otherwise this line is counted as held back.
    /// </summary>
    public bool TryAcquire(long nowMicroseconds, out long suppressed)
    {
        if (nowMicroseconds < _nextAllowed)
        {
            Suppressed++;
            suppressed = 0;
            return false;
        }

        _nextAllowed = nowMicroseconds + _intervalMicroseconds;
        suppressed = Suppressed;
        Suppressed = 0;
        return true;
    }
}
