using Vso.Transport.Native;

namespace Vso.Transport.Tests.Engine;

/// <summary>
/// The engine's watcher tells a thread held by the application (blocked, or computing) from one waiting for a core by
/// what the kernel says of it (EngineThread.Relief.cs): a blocked thread reads as sleeping and gains no CPU time; a
/// spinning one gains CPU time.
/// </summary>
public sealed class ThreadActivityTests
{
    [Fact]
    public void A_blocked_thread_reads_as_sleeping_and_a_spinning_one_gains_cpu_time()
    {
        using var release = new ManualResetEventSlim(false, spinCount: 1);
        using var ready = new ManualResetEventSlim(false);
        ThreadActivity? blocked = null;
        var sleeper = new Thread(() =>
        {
            blocked = ThreadActivity.OfCurrentThread();
            ready.Set();
            release.Wait();
        });
        sleeper.Start();
        ready.Wait();
        char state;
        long before;
        var sleepDeadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            Thread.Sleep(10);
            Assert.True(blocked!.TryRead(out state, out before));
        }
        while (state != 'S' && DateTime.UtcNow < sleepDeadline);

        Assert.Equal('S', state);
        Thread.Sleep(20);
        Assert.True(blocked.TryRead(out _, out var after));
        Assert.True(after - before < 5_000_000, $"a blocked thread ran {after - before} ns in 20 ms");
        release.Set();
        sleeper.Join();

        var spinning = ThreadActivity.OfCurrentThread()!;
        Assert.True(spinning.TryRead(out state, out before));
        Assert.Equal('R', state);
        // Spin until the kernel has counted 10 ms on a CPU (a busy machine may take longer; the bound is generous).
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            Thread.SpinWait(1000);
            Assert.True(spinning.TryRead(out state, out after));
        }
        while (after - before < 10_000_000 && DateTime.UtcNow < deadline);

        Assert.True(after - before >= 10_000_000, $"a spinning thread ran {after - before} ns in 10 s");
        Assert.Equal('R', state);
    }
}
