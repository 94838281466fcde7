using Vso.Transport.Engine;
using Xunit;

namespace Vso.Transport.Tests.Engine;

public sealed class TimerWheelTests
{
    private sealed class Owner(int id)
    {
        public int Id { get; } = id;
    }

    [Fact]
    public void Fires_at_the_exact_deadline_never_before()
    {
        var wheel = new TimerWheel<Owner>();
        var entry = new TimerEntry<Owner>(new Owner(1));
        wheel.Arm(entry, 1_000_000 + 200_000);
        Assert.Equal(1_200_000, wheel.NextDeadline);
        Assert.False(wheel.TryPopDue(1_199_999, out _));
        Assert.Equal(1_200_000, wheel.NextDeadline);
        Assert.True(wheel.TryPopDue(1_200_000, out var due));
        Assert.Same(entry, due);
        Assert.False(entry.IsArmed);
        Assert.Equal(long.MaxValue, wheel.NextDeadline);
    }

    [Fact]
    public void Same_deadline_fires_in_arm_order_and_cancel_is_in_place()
    {
        var wheel = new TimerWheel<Owner>();
        var entries = Enumerable.Range(0, 5).Select(i => new TimerEntry<Owner>(new Owner(i))).ToArray();
        foreach (var e in entries)
        {
            wheel.Arm(e, 5_000);
        }

        wheel.Cancel(entries[2]);
        var fired = new List<int>();
        while (wheel.TryPopDue(10_000, out var e))
        {
            fired.Add(e.Owner.Id);
        }

        Assert.Equal([0, 1, 3, 4], fired);
        Assert.Equal(0, wheel.Count);
    }

    [Fact]
    public void A_crowded_slot_reports_a_bound_never_after_the_earliest_deadline_and_fires_each_on_time()
    {
        var wheel = new TimerWheel<Owner>();
        wheel.TryPopDue(1_000_000, out _);
        var entries = Enumerable.Range(0, 1_000).Select(i => new TimerEntry<Owner>(new Owner(i))).ToArray();
        for (var i = 0; i < entries.Length; i++)
        {
            wheel.Arm(entries[i], 1_200_000 + (i * 37 % 1_000));
        }

        var fired = 0;
        long now = 1_000_000;
        while (wheel.Count > 0)
        {
            var next = wheel.NextDeadline;
            Assert.True(next <= 1_200_000 + (fired == 0 ? 0 : 999));
            Assert.True(next > now);
            now = next;
            while (wheel.TryPopDue(now, out var due))
            {
                Assert.Equal(now, 1_200_000 + (due.Owner.Id * 37 % 1_000));
                fired++;
            }
        }

        Assert.Equal(entries.Length, fired);
    }

    /// <summary>Random arms, re-arms and cancels against a plain model: same entries due, earliest first, exact next deadline.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Matches_a_reference_model(int seed)
    {
        var random = new Random(seed);
        var wheel = new TimerWheel<Owner>();
        var entries = Enumerable.Range(0, 200).Select(i => new TimerEntry<Owner>(new Owner(i))).ToArray();
        var model = new long[entries.Length];
        long now = 1_000_000;
        for (var step = 0; step < 20_000; step++)
        {
            var i = random.Next(entries.Length);
            switch (random.Next(4))
            {
                case 0:
                case 1:
                    // Spans from sub-millisecond to hours (delayed ACK, RTO, keepalive), some in the past.
                    var span = random.Next(5) switch
                    {
                        0 => random.Next(-50, 100),
                        1 => random.Next(1, 5_000),
                        2 => random.Next(1, 1_000_000),
                        3 => random.NextInt64(1, 7_200_000_000),
                        _ => random.Next(1, 64 * 64 * 64),
                    };
                    var deadline = Math.Max(1, now + span);
                    wheel.Arm(entries[i], deadline);
                    model[i] = deadline;
                    break;
                case 2:
                    wheel.Cancel(entries[i]);
                    model[i] = 0;
                    break;
                default:
                    var expected = model.Where(d => d != 0).DefaultIfEmpty(long.MaxValue).Min();
                    // Exact, unless the earliest slot is crowded (then a bound before it).
                    Assert.True(wheel.NextDeadline <= expected);
                    if (wheel.Count <= 64)
                    {
                        Assert.Equal(expected, wheel.NextDeadline);
                    }

                    now += random.Next(3) == 0 ? random.NextInt64(0, 10_000_000_000) : random.Next(0, 2_000);
                    var last = long.MinValue;
                    while (wheel.TryPopDue(now, out var due))
                    {
                        var id = due.Owner.Id;
                        Assert.NotEqual(0, model[id]);
                        Assert.True(model[id] <= now, "fired early");
                        Assert.True(model[id] >= last, "out of order");
                        last = model[id];
                        model[id] = 0;
                    }

                    Assert.DoesNotContain(model, d => d != 0 && d <= now);
                    break;
            }

            Assert.Equal(model.Count(d => d != 0), wheel.Count);
        }
    }
}
