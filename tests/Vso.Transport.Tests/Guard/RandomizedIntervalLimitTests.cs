using Vso.Transport.Engine;

namespace Vso.Transport.Tests.Guard;

/// <summary>The stack-wide challenge ACK budget, randomised per interval as Linux does after CVE-2016-5696.</summary>
public sealed class RandomizedIntervalLimitTests
{
    [Fact]
    public void Per_stack_budgets_are_drawn_between_half_and_one_and_a_half_times_the_limit()
    {
        var limit = new RandomizedIntervalLimit(1000, 1_000_000, seed: 42);
        Assert.Equal(500, limit.MinimumPerInterval);
        Assert.Equal(1499, limit.MaximumPerInterval);

        var budgets = new List<int>();
        for (long second = 0; second < 400; second++)
        {
            var now = second * 1_000_000;
            var granted = 0;
            while (limit.TryTake(now + granted))
            {
                granted++;
            }

            // Refused from then on until the next interval.
            Assert.False(limit.TryTake(now + 999_999));
            Assert.InRange(granted, 500, 1499);
            budgets.Add(granted);
        }

        // Randomised: many different budgets, spread over the range, mean near the limit.
        Assert.True(budgets.Distinct().Count() > 300);
        Assert.True(budgets.Min() < 600 && budgets.Max() > 1400, $"{budgets.Min()}..{budgets.Max()}");
        Assert.InRange(budgets.Average(), 950, 1050);
    }

    [Fact]
    public void Per_stack_budgets_are_reproducible_for_a_seed_and_differ_between_seeds()
    {
        Assert.Equal(Budgets(7), Budgets(7));
        Assert.NotEqual(Budgets(7), Budgets(8));

        static List<int> Budgets(ulong seed)
        {
            var limit = new RandomizedIntervalLimit(100, 1_000_000, seed);
            var budgets = new List<int>();
            for (long second = 0; second < 20; second++)
            {
                var granted = 0;
                while (limit.TryTake(second * 1_000_000))
                {
                    granted++;
                }

                budgets.Add(granted);
            }

            return budgets;
        }
    }

    [Fact]
    public void A_limit_of_one_is_exactly_one_per_interval()
    {
        var limit = new RandomizedIntervalLimit(1, 1_000_000, seed: 1);
        Assert.Equal(1, limit.MinimumPerInterval);
        Assert.Equal(1, limit.MaximumPerInterval);
        Assert.True(limit.TryTake(0));
        Assert.False(limit.TryTake(999_999));
        Assert.True(limit.TryTake(1_000_000));
        Assert.Equal(0, limit.Remaining);

        // Intervals are aligned on the clock, below zero as well.
        Assert.True(limit.TryTake(-1));
        Assert.False(limit.TryTake(-1_000_000));
        Assert.True(limit.TryTake(-1_000_001));
    }
}
