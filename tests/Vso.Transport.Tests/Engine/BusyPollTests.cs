using System.Net;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Engine;

/// <summary>
/// The engine's adaptive busy-poll (issue 12 item 2, as Linux's SO_BUSY_POLL), on the real engine thread over a scripted
/// link whose clock moves only when the engine polls (1 µs a poll) or sleeps (to the next arrival): the counts are
/// deterministic. Work arrives as the application's posts would, one every <c>gap</c> µs.
/// </summary>
public sealed class BusyPollTests
{
    private const int Arrivals = 1_000;

    [Fact]
    public void Steady_traffic_within_the_budget_is_taken_without_sleeping()
    {
        var (sleeps, _) = Run(busyPollMicros: 100, gapMicros: 50);

        // The first idle spell sleeps (no traffic seen yet); from then on every arrival lands within the budget.
        Assert.InRange(sleeps, 1, 3);
    }

    [Fact]
    public void Without_a_budget_the_engine_sleeps_before_every_arrival()
    {
        var (sleeps, _) = Run(busyPollMicros: 0, gapMicros: 50);

        Assert.InRange(sleeps, Arrivals - 1, Arrivals + 1);
    }

    [Fact]
    public void Sparse_traffic_sleeps_at_once_instead_of_spinning_through_the_budget()
    {
        var (sleeps, polls) = Run(busyPollMicros: 100, gapMicros: 500);

        // Gaps longer than the budget: one spin finds nothing, and the engine then sleeps at once every time, so it
        // polls a handful of times per arrival, not the 100 a spin through the budget would cost.
        Assert.InRange(sleeps, Arrivals - 1, Arrivals + 1);
        Assert.True(polls < 5 * Arrivals, $"{polls} polls for {Arrivals} arrivals");
    }

    private static (int Sleeps, long Polls) Run(int busyPollMicros, long gapMicros)
    {
        var clock = new VirtualClock();
        using var link = new ScriptedLink(clock, gapMicros);
        using var stack = new VsoStack(link, new VsoStackOptions { Address = IPAddress.Parse("198.18.0.2"), BusyPollMicroseconds = busyPollMicros }, clock);
        link.Stack = stack.Shards[0];
        stack.Start();
        Assert.True(link.Done.Wait(TimeSpan.FromSeconds(60)), "the arrivals were not all taken");
        return (link.SleepsAtDone, link.PollsAtDone);
    }

    /// <summary>
    /// A link that never receives a frame: the engine's polls (Receive) advance the clock by 1 µs, its sleeps
    /// (WaitForFrames) to the next arrival or the timeout; each arrival due posts one work item to the stack.
    /// </summary>
    private sealed class ScriptedLink(VirtualClock clock, long gapMicros) : ILink
    {
        private readonly Work _work = new();
        private long _nextArrival = clock.NowMicroseconds + gapMicros;
        private int _arrived;
        private int _sleeps;
        private long _polls;

        public NetworkStack? Stack { get; set; }

        public ManualResetEventSlim Done { get; } = new();

        public int SleepsAtDone { get; private set; }

        public long PollsAtDone { get; private set; }

        public MacAddress HardwareAddress => new(0x0200_0000_0002UL);

        public int Mtu => 1500;

        public long NextEventMicroseconds => long.MaxValue;

        public bool CanBlock => true;

        public int Receive(IFrameReceiver receiver, int maxFrames)
        {
            _polls++;
            clock.AdvanceTo(clock.NowMicroseconds + 1);
            Deliver();
            return 0;
        }

        public void Transmit(TransmitBatch batch)
        {
        }

        public bool WaitForFrames(TimeSpan timeout)
        {
            _sleeps++;
            clock.AdvanceTo(Math.Min(_nextArrival, clock.NowMicroseconds + (timeout.Ticks / TimeSpan.TicksPerMicrosecond)));
            Deliver();
            return false;
        }

        private void Deliver()
        {
            while (Stack is { } stack && _arrived < Arrivals && _nextArrival <= clock.NowMicroseconds)
            {
                stack.Post(_work);
                _arrived++;
                _nextArrival += gapMicros;
                if (_arrived == Arrivals)
                {
                    SleepsAtDone = _sleeps;
                    PollsAtDone = _polls;
                    Done.Set();
                }
            }
        }

        public void Dispose() => Done.Dispose();

        private sealed class Work : IEngineWork
        {
            public void Execute()
            {
            }
        }
    }
}
