using System.Net;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Engine;

/// <summary>
/// <see cref="VsoStackOptions.TurnOnCallingThread"/> (issue 12 item 2): while the engine sleeps, the thread that posts
/// work runs the turn itself instead of waking the engine; a thread-pool thread runs it after its current work item,
/// once for all it posted. The engine runs on its real thread over a link whose wait blocks until interrupted (no
/// timeout), so which thread ran the work and how often the engine was woken are exact.
/// </summary>
public sealed class TurnOnCallingThreadTests
{
    [Fact]
    public void Work_posted_while_the_engine_sleeps_runs_on_the_posting_thread_without_a_wake_up()
    {
        var (ranOn, poster, interrupts) = PostWhileAsleep(turnOnCaller: true, armEarlierDeadline: false);

        Assert.Equal(poster, ranOn);
        Assert.Equal(0, interrupts);
    }

    [Fact]
    public void Without_the_setting_the_engine_is_woken_and_runs_the_work()
    {
        var (ranOn, poster, interrupts) = PostWhileAsleep(turnOnCaller: false, armEarlierDeadline: false);

        Assert.NotEqual(poster, ranOn);
        Assert.Equal(1, interrupts);
    }

    [Fact]
    public void A_turn_that_arms_a_deadline_before_the_engines_wake_up_time_wakes_the_engine()
    {
        // The engine sleeps until its wait's bound (100 ms); the turn on the caller makes something due in 1 ms, which
        // the sleeping engine would miss: it is woken to recompute its sleep.
        var (ranOn, poster, interrupts) = PostWhileAsleep(turnOnCaller: true, armEarlierDeadline: true);

        Assert.Equal(poster, ranOn);
        Assert.Equal(1, interrupts);
    }

    [Fact]
    public void A_thread_pool_thread_posts_and_goes_on_and_the_turn_runs_on_the_thread_pool_without_a_wake_up()
    {
        using var link = new SleepingLink();
        using var stack = new VsoStack(link, new VsoStackOptions { Address = IPAddress.Parse("198.18.0.2"), TurnOnCallingThread = true });
        stack.Start();
        Assert.True(link.Asleep.Wait(TimeSpan.FromSeconds(30)), "the engine never slept");
        var shard = stack.Shards[0];

        // The work waits (bounded) for its poster to have gone on: run inside Post, it would wait in vain.
        using var postReturned = new ManualResetEventSlim();
        var sawPostReturn = false;
        var ranOnPool = false;
        var work = new RecordingWork(() =>
        {
            ranOnPool = Thread.CurrentThread.IsThreadPoolThread;
            sawPostReturn = postReturned.Wait(TimeSpan.FromSeconds(5));
        });
        ThreadPool.UnsafeQueueUserWorkItem(
            _ =>
            {
                shard.Post(work);
                postReturned.Set();
            },
            null);

        Assert.True(work.Done.Wait(TimeSpan.FromSeconds(30)), "the posted work never ran");
        Assert.True(sawPostReturn, "the turn ran inside Post, on the posting work item");
        Assert.True(ranOnPool);
        Assert.Equal(0, link.Interrupts);
    }

    private static (int RanOn, int Poster, int Interrupts) PostWhileAsleep(bool turnOnCaller, bool armEarlierDeadline)
    {
        using var link = new SleepingLink();
        using var stack = new VsoStack(link, new VsoStackOptions { Address = IPAddress.Parse("198.18.0.2"), TurnOnCallingThread = turnOnCaller });
        stack.Start();
        Assert.True(link.Asleep.Wait(TimeSpan.FromSeconds(30)), "the engine never slept");
        var shard = stack.Shards[0];
        var work = new RecordingWork(() =>
        {
            if (armEarlierDeadline)
            {
                link.NextEvent = shard.Clock.NowMicroseconds + 1_000;
            }
        });

        link.Asleep.Reset();

        // From a thread of its own: a thread-pool thread would run the turn after its work item (the test above).
        var poster = new Thread(() => shard.Post(work));
        poster.Start();
        poster.Join();
        Assert.True(work.Done.Wait(TimeSpan.FromSeconds(30)), "the posted work never ran");
        return (work.RanOn, poster.ManagedThreadId, link.Interrupts);
    }

    private sealed class RecordingWork(Action body) : IEngineWork
    {
        public ManualResetEventSlim Done { get; } = new();

        public int RanOn { get; private set; }

        public void Execute()
        {
            RanOn = Environment.CurrentManagedThreadId;
            body();
            Done.Set();
        }
    }

    /// <summary>Receives nothing; its wait blocks until <see cref="Interrupt"/>, whatever the timeout.</summary>
    private sealed class SleepingLink : ILink
    {
        private readonly SemaphoreSlim _interrupted = new(0);
        private int _interrupts;

        public ManualResetEventSlim Asleep { get; } = new();

        public int Interrupts => Volatile.Read(ref _interrupts);

        public long NextEvent { get; set; } = long.MaxValue;

        public MacAddress HardwareAddress => new(0x0200_0000_0002UL);

        public int Mtu => 1500;

        public long NextEventMicroseconds => NextEvent;

        public bool CanBlock => true;

        public int Receive(IFrameReceiver receiver, int maxFrames) => 0;

        public void Transmit(TransmitBatch batch)
        {
        }

        public bool WaitForFrames(TimeSpan timeout)
        {
            Asleep.Set();
            _interrupted.Wait();
            return false;
        }

        public void Interrupt()
        {
            Interlocked.Increment(ref _interrupts);
            _interrupted.Release();
        }

        public void Dispose()
        {
            _interrupted.Dispose();
            Asleep.Dispose();
        }
    }
}
