using CsCheck;
using Vso.Transport.Engine;
using Vso.Transport.Tests.Wire;

namespace Vso.Transport.Tests.Guard;

/// <summary>The reply rate limiter (RFC 5961 §7, Linux tcp_invalid_ratelimit), on the engine's clock.</summary>
public sealed class TokenBucketTests
{
    [Fact]
    public void A_full_bucket_gives_its_burst_and_then_refuses()
    {
        var bucket = TokenBucket.PerSecond(10, 5, 1_000);
        for (var i = 0; i < 5; i++)
        {
            Assert.True(bucket.TryTake(1_000));
        }

        Assert.False(bucket.TryTake(1_000));
        Assert.Equal(0, bucket.Available(1_000));
    }

    [Fact]
    public void Tokens_refill_at_the_rate()
    {
        var bucket = TokenBucket.PerSecond(10, 1, 0);
        Assert.True(bucket.TryTake(0));
        Assert.False(bucket.TryTake(99_999));
        Assert.True(bucket.TryTake(100_000));
        Assert.False(bucket.TryTake(150_000));
        Assert.True(bucket.TryTake(200_000));
    }

    [Fact]
    public void A_long_idle_time_fills_the_bucket_to_its_burst_only()
    {
        var bucket = TokenBucket.PerSecond(1000, 3, 0);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(bucket.TryTake(0));
        }

        Assert.Equal(3, bucket.Available(3_600_000_000));
        Assert.Equal(3, bucket.Available(long.MaxValue));
        for (var i = 0; i < 3; i++)
        {
            Assert.True(bucket.TryTake(3_600_000_000));
        }

        Assert.False(bucket.TryTake(3_600_000_000));
    }

    [Fact]
    public void Invalid_segment_acks_are_one_per_500_ms_as_linux()
    {
        var bucket = TokenBucket.InvalidSegmentAck(10_000_000);
        Assert.True(bucket.TryTake(10_000_000));
        Assert.False(bucket.TryTake(10_000_001));
        Assert.False(bucket.TryTake(10_499_999));
        Assert.True(bucket.TryTake(10_500_000));
        Assert.False(bucket.TryTake(10_600_000));

        // No burst: a long pause still buys only one reply.
        Assert.True(bucket.TryTake(20_000_000));
        Assert.False(bucket.TryTake(20_000_000));
    }

    [Fact]
    public void A_rate_that_does_not_divide_a_second_does_not_drift()
    {
        // A burst of 2 so the bucket never overflows between polls: every unit refilled is taken.
        var bucket = TokenBucket.PerSecond(3, 2, 0);
        var taken = 0;
        for (long now = 0; now <= 1_000_000_000; now += 1_000)
        {
            taken += bucket.TryTake(now) ? 1 : 0;
        }

        // The initial 2, then exactly 3 per second for 1000 s.
        Assert.Equal(3002, taken);
    }

    [Fact]
    public void A_clock_stepping_back_adds_nothing()
    {
        var bucket = TokenBucket.PerSecond(10, 1, 1_000_000);
        Assert.True(bucket.TryTake(1_000_000));
        Assert.False(bucket.TryTake(0));
        Assert.False(bucket.TryTake(1_050_000));
        Assert.True(bucket.TryTake(1_100_000));
    }

    [Fact]
    public void A_default_bucket_refuses_everything()
    {
        var bucket = default(TokenBucket);
        Assert.False(bucket.TryTake(0));
        Assert.False(bucket.TryTake(long.MaxValue));
        Assert.Equal(0, bucket.Available(long.MaxValue));
    }

    [Fact]
    public void Bad_parameters_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenBucket.PerSecond(0, 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenBucket.PerSecond(1, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenBucket.OnePer(0, 0));
        Assert.Throws<OverflowException>(() => new TokenBucket(1, long.MaxValue / 2, 4, 0));
    }

    [Fact]
    public void No_window_of_time_ever_sees_more_than_burst_plus_rate_times_its_length()
    {
        var gen =
            from rate in Gen.Int[1, 2000]
            from period in Gen.Int[0, 3].Select(i => new[] { 1_000L, 1_000_000L, 500_000L, 60_000_000L }[i])
            from burst in Gen.Int[1, 20]
            from steps in Gen.Long[0, 3_000_000].Array[1, 150]
            select (rate, period, burst, steps);

        Deterministic.Check(gen, t =>
        {
            var bucket = new TokenBucket(t.rate, t.period, t.burst, 0);
            var times = new List<long>();
            long now = 0;
            foreach (var step in t.steps)
            {
                now += step;

                // Several attempts at some instants, to press on the burst.
                for (var attempt = 0; attempt < 1 + (step % 4); attempt++)
                {
                    if (bucket.TryTake(now))
                    {
                        times.Add(now);
                    }
                }
            }

            // For every window [times[i], times[j]]: j - i + 1 takes fit in burst + rate * length / period.
            for (var i = 0; i < times.Count; i++)
            {
                for (var j = i; j < times.Count; j++)
                {
                    var allowed = t.burst + ((Int128)t.rate * (times[j] - times[i]) / t.period);
                    Assert.True(j - i + 1 <= allowed, $"{j - i + 1} takes in {times[j] - times[i]} µs, allowed {allowed}");
                }
            }
        }, seed: 0x70_0001, iterations: 300);
    }
}
