using Vso.Transport.Tcp.Congestion;

namespace Vso.Transport.Tests.Congestion;

/// <summary>CUBIC (RFC 9438) and HyStart++ (RFC 9406) against their equations, ACK by ACK.</summary>
public sealed class CubicTests
{
    private const int Mss = 1000;
    private const long Rtt = 10_000;

    [Fact]
    public void Loss_sets_ssthresh_to_beta_times_cwnd_and_remembers_w_max()
    {
        var cubic = GrownTo(100);
        cubic.OnCongestionEvent(100 * Mss, 0);

        Assert.Equal(70 * Mss, cubic.SlowStartThreshold);
        Assert.Equal(70 * Mss, cubic.CongestionWindow);
        Assert.Equal(100 * Mss, cubic.WindowMax);
    }

    [Fact]
    public void K_is_the_time_to_climb_back_to_w_max()
    {
        var cubic = GrownTo(100);
        cubic.OnCongestionEvent(100 * Mss, 0);
        cubic.OnRecoveryEnd(0, 0);

        // First ACK in congestion avoidance starts the epoch and computes K = cbrt(W_max (1 - β) / C) (eqn. 2).
        cubic.OnAck(new AckSample(Mss, 70 * Mss, Rtt, 1_000_000, false));
        var expected = Math.Cbrt(100 * (1 - 0.7) / 0.4);
        Assert.Equal(expected, cubic.K / 1e6, 3);
    }

    [Fact]
    public void Window_is_concave_below_w_max_and_plateaus_near_it()
    {
        var cubic = GrownTo(100);
        cubic.OnCongestionEvent(100 * Mss, 0);
        cubic.OnRecoveryEnd(0, 0);
        var k = Math.Cbrt(100 * 0.3 / 0.4);

        // Acknowledge a window per RTT for K seconds: the window approaches W_max from below, growing ever more slowly.
        // With a 100 ms RTT the cubic function, not the Reno-friendly estimate (§4.3), drives the window.
        long now = 1_000_000;
        var early = Grow(cubic, ref now, k / 4, 100_000);
        var late = Grow(cubic, ref now, k / 4, 100_000);
        var atK = Grow(cubic, ref now, k / 2, 100_000);

        Assert.True(early.Growth > late.Growth, $"concave: first quarter grew {early.Growth}, second {late.Growth}");
        Assert.InRange(atK.Window, 95 * Mss, 106 * Mss);
    }

    [Fact]
    public void With_a_short_rtt_the_window_grows_at_least_as_fast_as_reno()
    {
        var cubic = GrownTo(100);
        cubic.OnCongestionEvent(100 * Mss, 0);
        cubic.OnRecoveryEnd(0, 0);

        // §4.3: at 10 ms the cubic curve is slower than Reno; W_est (α_cubic ≈ 0.53 segment per RTT) takes over.
        long now = 1_000_000;
        var (window, growth) = Grow(cubic, ref now, 1.0, Rtt);
        Assert.True(growth >= 45 * Mss, $"grew {growth} in 100 RTTs");
        Assert.True(window > 100 * Mss);
    }

    [Fact]
    public void Fast_convergence_lowers_w_max_when_losses_come_at_a_smaller_window()
    {
        var cubic = GrownTo(100);
        cubic.OnCongestionEvent(100 * Mss, 0);
        cubic.OnRecoveryEnd(0, 0);

        // The next loss comes at 70 segments, below the last W_max: W_max = 70 (1 + β) / 2 (§4.7).
        cubic.OnCongestionEvent(70 * Mss, 0);
        Assert.Equal((long)(70 * 1.7 / 2 * Mss), cubic.WindowMax);
    }

    [Fact]
    public void Timeout_collapses_to_one_segment()
    {
        var cubic = GrownTo(50);
        cubic.OnRetransmissionTimeout(50 * Mss, 0);
        Assert.Equal(Mss, cubic.CongestionWindow);
        Assert.Equal(35 * Mss, cubic.SlowStartThreshold);
    }

    [Fact]
    public void HyStart_leaves_slow_start_after_an_rtt_rise_confirmed_for_five_rounds()
    {
        var cubic = new CubicCongestionControl();
        cubic.Initialize(Mss, 0);
        uint una = 0;
        long now = 0;

        // Rounds at a steady 10 ms: plain slow start.
        for (var round = 0; round < 4; round++)
        {
            Round(cubic, ref una, ref now, Rtt);
        }

        Assert.False(cubic.InConservativeSlowStart);
        Assert.Equal(long.MaxValue, cubic.SlowStartThreshold);

        // The RTT rises by more than max(4 ms, 10/8 ms): conservative slow start.
        Round(cubic, ref una, ref now, Rtt + 6_000);
        Assert.True(cubic.InConservativeSlowStart);
        var before = cubic.CongestionWindow;
        Round(cubic, ref una, ref now, Rtt + 6_000);
        var cssGrowth = cubic.CongestionWindow - before;
        Assert.True(cssGrowth < before / 2, $"CSS grows by a quarter of slow start: {cssGrowth} on {before}");

        for (var round = 0; round < 5 && cubic.SlowStartThreshold == long.MaxValue; round++)
        {
            Round(cubic, ref una, ref now, Rtt + 6_000);
        }

        Assert.NotEqual(long.MaxValue, cubic.SlowStartThreshold);
        Assert.False(cubic.InConservativeSlowStart);
    }

    [Fact]
    public void HyStart_resumes_slow_start_when_the_rtt_rise_was_spurious()
    {
        var cubic = new CubicCongestionControl();
        cubic.Initialize(Mss, 0);
        uint una = 0;
        long now = 0;
        for (var round = 0; round < 3; round++)
        {
            Round(cubic, ref una, ref now, Rtt);
        }

        Round(cubic, ref una, ref now, Rtt + 6_000);
        Assert.True(cubic.InConservativeSlowStart);
        Round(cubic, ref una, ref now, Rtt);
        Assert.False(cubic.InConservativeSlowStart);
        Assert.Equal(long.MaxValue, cubic.SlowStartThreshold);
    }

    /// <summary>One round trip: a window of ACKs of one segment each, all with the same RTT sample.</summary>
    private static void Round(CubicCongestionControl cubic, ref uint una, ref long now, long rtt)
    {
        var segments = cubic.CongestionWindow / Mss;
        var roundEnd = una + (uint)(segments * Mss);
        for (var i = 0; i < segments; i++)
        {
            una += Mss;
            now += rtt / segments;
            cubic.OnAck(new AckSample(Mss, (segments - i - 1) * Mss, rtt, now, false, una, roundEnd + (uint)Mss));
        }
    }

    private static CubicCongestionControl GrownTo(int segments)
    {
        var cubic = new CubicCongestionControl(hyStart: false);
        cubic.Initialize(Mss, 0);
        while (cubic.CongestionWindow < segments * Mss)
        {
            cubic.OnAck(new AckSample(Mss, cubic.CongestionWindow, Rtt, 0, false));
        }

        return cubic;
    }

    private static (long Window, long Growth) Grow(CubicCongestionControl cubic, ref long now, double seconds, long rtt)
    {
        var start = cubic.CongestionWindow;
        var end = now + (long)(seconds * 1e6);
        while (now < end)
        {
            var segments = Math.Max(1, cubic.CongestionWindow / Mss);
            for (var i = 0; i < segments; i++)
            {
                cubic.OnAck(new AckSample(Mss, cubic.CongestionWindow, rtt, now + (rtt * i / segments), false));
            }

            now += rtt;
        }

        return (cubic.CongestionWindow, cubic.CongestionWindow - start);
    }
}
