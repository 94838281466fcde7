namespace Vso.Transport.Engine;

/// <summary>
/// A token bucket for rate-limited replies: <c>tokensPerPeriod</c> tokens refill every
/// <c>periodMicroseconds</c>, up to <c>burst</c>; each reply takes one. Used for challenge ACKs per
/// connection (RFC 5961 §7: "an implementation SHOULD include a ACK throttling mechanism"), duplicate
/// ACKs to out-of-window segments (Linux tcp_invalid_ratelimit, one per 500 ms per connection, see
/// <see cref="InvalidSegmentAck"/>), RSTs for closed ports and ICMP echo replies.
/// <para>
/// Exact integer arithmetic: one token is <c>periodMicroseconds</c> units and each microsecond adds
/// <c>tokensPerPeriod</c> units, so no rounding drifts the rate over a long run. Driven by the engine's
/// clock (<see cref="IClock"/>), never the wall clock. A mutable struct so that it lives inside its owner
/// without an allocation: keep it in a field and never copy it. A default instance refuses everything.
/// </para>
/// </summary>
internal struct TokenBucket
{
    /// <summary>Linux's tcp_invalid_ratelimit default: 500 ms between replies to invalid segments.</summary>
    public const long InvalidSegmentAckIntervalMicroseconds = 500_000;

    private readonly long _unitsPerMicrosecond; // tokensPerPeriod
    private readonly long _unitsPerToken;       // periodMicroseconds
    private readonly long _capacityUnits;
    private long _units;
    private long _refilledAtMicroseconds;

    /// <summary>A bucket that starts full (<paramref name="burst"/> tokens) at <paramref name="nowMicroseconds"/>.</summary>
    public TokenBucket(int tokensPerPeriod, long periodMicroseconds, int burst, long nowMicroseconds)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tokensPerPeriod);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(periodMicroseconds);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(burst);
        _unitsPerMicrosecond = tokensPerPeriod;
        _unitsPerToken = periodMicroseconds;
        _capacityUnits = checked(burst * periodMicroseconds);
        _units = _capacityUnits;
        _refilledAtMicroseconds = nowMicroseconds;
    }

    /// <summary><paramref name="ratePerSecond"/> tokens a second, up to <paramref name="burst"/> at once.</summary>
    public static TokenBucket PerSecond(int ratePerSecond, int burst, long nowMicroseconds) =>
        new(ratePerSecond, 1_000_000, burst, nowMicroseconds);

    /// <summary>One token per <paramref name="intervalMicroseconds"/>, no burst: the shape of Linux's out-of-window ACK limit.</summary>
    public static TokenBucket OnePer(long intervalMicroseconds, long nowMicroseconds) =>
        new(1, intervalMicroseconds, 1, nowMicroseconds);

    /// <summary>Linux's default for duplicate ACKs to invalid segments (tcp_invalid_ratelimit, RFC 5961 §7).</summary>
    public static TokenBucket InvalidSegmentAck(long nowMicroseconds) =>
        OnePer(InvalidSegmentAckIntervalMicroseconds, nowMicroseconds);

    /// <summary>Whole tokens available at <paramref name="nowMicroseconds"/>, without taking any.</summary>
    public readonly long Available(long nowMicroseconds) =>
        _unitsPerToken == 0 ? 0 : Refilled(nowMicroseconds) / _unitsPerToken;

    /// <summary>When the next whole token is there: <paramref name="nowMicroseconds"/> if one is now; never for a default instance.</summary>
    public readonly long NextTokenAt(long nowMicroseconds)
    {
        var units = Refilled(nowMicroseconds);
        if (_unitsPerToken == 0 || _unitsPerMicrosecond == 0)
        {
            return long.MaxValue;
        }

        return units >= _unitsPerToken ? nowMicroseconds : nowMicroseconds + ((_unitsPerToken - units + _unitsPerMicrosecond - 1) / _unitsPerMicrosecond);
    }

    /// <summary>Takes one token if there is one: true means "send the reply".</summary>
    public bool TryTake(long nowMicroseconds)
    {
        var units = Refilled(nowMicroseconds);
        if (nowMicroseconds > _refilledAtMicroseconds)
        {
            _refilledAtMicroseconds = nowMicroseconds;
        }

        if (_unitsPerToken == 0 || units < _unitsPerToken)
        {
            _units = units;
            return false;
        }

        _units = units - _unitsPerToken;
        return true;
    }

    private readonly long Refilled(long nowMicroseconds)
    {
        // A clock that steps back adds nothing; a long idle time only fills the bucket (checked first so
        // that elapsed * rate cannot overflow).
        var elapsed = nowMicroseconds - _refilledAtMicroseconds;
        if (elapsed <= 0 || _unitsPerMicrosecond == 0)
        {
            return _units;
        }

        var missing = _capacityUnits - _units;
        return elapsed >= (missing / _unitsPerMicrosecond) + 1
            ? _capacityUnits
            : _units + (elapsed * _unitsPerMicrosecond);
    }
}
