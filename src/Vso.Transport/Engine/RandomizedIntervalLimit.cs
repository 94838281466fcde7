using Vso.Transport.Links;

namespace Vso.Transport.Engine;

/// <summary>
/// A stack-wide cap on challenge ACKs per interval whose value is drawn afresh, at random, for each
/// interval (RFC 5961 §7, ACK throttling; Linux tcp_send_challenge_ack with
/// tcp_challenge_ack_limit). A fixed global cap is a side channel: an off-path attacker who triggers
/// challenge ACKs and counts how many of his own he receives learns whether some other connection used
/// up part of the budget, and from that its sequence numbers (CVE-2016-5696, "off-path TCP exploits",
/// Cao et al., USENIX Security 2016). With the cap uniform in [limit/2, limit*3/2) each interval the count
/// no longer tells. Per-connection limits (<see cref="TokenBucket"/>) come first; this bounds the total.
/// Intervals are aligned to multiples of the interval on the engine clock, as Linux's jiffies/HZ.
/// Engine-thread only; deterministic for a seed.
/// </summary>
internal sealed class RandomizedIntervalLimit
{
    /// <summary>Linux's tcp_challenge_ack_limit default from 4.7 to 5.19 (later kernels leave it unlimited).</summary>
    public const int DefaultChallengeAckLimit = 1000;

    public const long DefaultIntervalMicroseconds = 1_000_000;

    private readonly int _limit;
    private readonly long _intervalMicroseconds;
    private Xoshiro256StarStar _random;
    private long _interval = long.MinValue;
    private int _remaining;

    public RandomizedIntervalLimit(int limitPerInterval, long intervalMicroseconds, ulong seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limitPerInterval);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(intervalMicroseconds);
        _limit = limitPerInterval;
        _intervalMicroseconds = intervalMicroseconds;
        _random = new Xoshiro256StarStar(seed);
    }

    /// <summary>The smallest budget an interval can draw: half the limit, rounded up.</summary>
    public int MinimumPerInterval => (_limit + 1) / 2;

    /// <summary>The largest budget an interval can draw; the mean over intervals is about the limit.</summary>
    public int MaximumPerInterval => MinimumPerInterval + _limit - 1;

    /// <summary>Replies left in the current interval (as of the last call to <see cref="TryTake"/>).</summary>
    public int Remaining => _remaining;

    /// <summary>Takes one reply from the current interval's budget: true means "send it".</summary>
    public bool TryTake(long nowMicroseconds)
    {
        var interval = Math.DivRem(nowMicroseconds, _intervalMicroseconds, out var rest);
        if (rest < 0)
        {
            interval--; // floor for clocks that start below zero
        }

        if (interval != _interval)
        {
            // A new interval draws a new budget, uniform in [half, half + limit - 1] (Linux's range).
            _interval = interval;
            _remaining = MinimumPerInterval + (int)_random.NextInt64(_limit);
        }

        if (_remaining == 0)
        {
            return false;
        }

        _remaining--;
        return true;
    }
}
