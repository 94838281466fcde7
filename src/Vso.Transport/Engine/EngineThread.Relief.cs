using Vso.Transport.Native;

namespace Vso.Transport.Engine;

/// <summary>
/// Relief for an engine thread held by application code. The engine thread runs, after each turn, the continuations
/// that turn scheduled (<see cref="AfterTurnQueue"/>), outside the gate. A watcher thread looks every millisecond while
/// continuations run (and sleeps when none have run for a while): once one continuation has held the engine thread for
/// <see cref="StallChecks"/> looks, blocked or computing (not merely waiting for a core), the watcher takes the loop
/// over (frames, timers, posted work, sends) and the queue gives the rest of its entries to the thread pool, until the
/// held continuation returns and the engine thread takes its loop back. So a handler that blocks (a synchronous wait, a long computation) delays the others by a few
/// milliseconds once, as Go's runtime hands a processor on when a goroutine blocks in a system call.
/// A GC pause suspends the watcher too, so it counts as one look, not as a stall.
/// </summary>
internal sealed partial class EngineThread
{
    /// <summary>
    /// Looks, one millisecond apart, that must find the same continuation running before the loop is relieved: long enough
    /// that a lock held by a preempted thread rarely counts (at 4 such holds were taken for stalls under load).
    /// </summary>
    private const int StallChecks = 10;

    /// <summary>The look from which the engine thread's time on a CPU is measured (<see cref="HeldByApplication"/>).</summary>
    private const int BaselineCheck = 2;

    /// <summary>Looks without a continuation started before the watcher sleeps until one starts.</summary>
    private const int QuietChecksBeforePark = 64;

    private const int Loop = 0;          // the engine thread runs the loop (turns, sleeps)
    private const int Application = 1;   // the engine thread runs continuations after a turn
    private const int Relieved = 2;      // the watcher runs the loop; the engine thread is held by a continuation
    private const int Returning = 3;     // the held continuation returned: the watcher hands the loop back

    private readonly Thread _watcher;
    private readonly ManualResetEventSlim _watcherWake = new(false, spinCount: 1);
    private readonly ManualResetEventSlim _handBack = new(false, spinCount: 1);
    private int _phase;                  // Loop, Application, Relieved or Returning
    private int _watcherParked;          // the watcher sleeps until a continuation starts
    private ThreadActivity? _engineActivity;  // the engine thread's, as the kernel sees it; set when it starts

    /// <summary>The watcher's name: the engine's with its "engine" swapped for "relief", within Linux's 15 characters.</summary>
    private static string ReliefThreadName(string engineName) => engineName.Replace("vso-engine", "vso-relief", StringComparison.Ordinal);

    /// <summary>The loop's current runner must leave its wait: the engine thread wants its loop back.</summary>
    private bool LoopWanted => Volatile.Read(ref _phase) == Returning;

    /// <summary>Engine thread, after a turn that scheduled continuations.</summary>
    private void RunApplication()
    {
        var queue = _stack.AfterTurn;
        Interlocked.Exchange(ref _phase, Application);
        if (Volatile.Read(ref _watcherParked) == 1 && Interlocked.Exchange(ref _watcherParked, 0) == 1)
        {
            _watcherWake.Set();
        }

        queue.Run();
        if (Interlocked.CompareExchange(ref _phase, Loop, Application) != Application)
        {
            TakeLoopBack();
        }

        queue.Clear();
    }

    /// <summary>Engine thread, back from a continuation during which the watcher ran the loop: wait for it to hand the loop back.</summary>
    private void TakeLoopBack()
    {
        Interlocked.CompareExchange(ref _phase, Returning, Relieved);
        InterruptSleep();
        _wake.Set();
        _handBack.Wait();
        _handBack.Reset();
    }

    /// <summary>The watcher thread.</summary>
    private void Watch()
    {
        var queue = _stack.AfterTurn;
        long seen = -1;
        var strikes = 0;
        var quiet = 0;
        long heldSince = 0;
        long baselineWall = 0;
        long baselineRun = -1;
        while (!_stopping)
        {
            if (quiet >= QuietChecksBeforePark)
            {
                Park(queue.Started);
                quiet = 0;
                continue;
            }

            Thread.Sleep(1);
            var started = queue.Started;
            var held = Volatile.Read(ref _phase) == Application && queue.Running;
            if (started != seen)
            {
                seen = started;
                quiet = 0;
                strikes = held ? 1 : 0;
                heldSince = _stack.Clock.NowMicroseconds;
                continue;
            }

            if (!held)
            {
                strikes = 0;
                quiet++;
                continue;
            }

            strikes++;
            if (strikes == BaselineCheck)
            {
                // Held for a look already (rare): from here on, see how much of the wall time it runs on a CPU.
                baselineWall = _stack.Clock.NowMicroseconds;
                baselineRun = _engineActivity is { } a && a.TryRead(out _, out var run) ? run : -1;
            }
            else if (strikes >= StallChecks && HeldByApplication(baselineWall, baselineRun, out var how)
                && Interlocked.CompareExchange(ref _phase, Relieved, Application) == Application)
            {
                queue.Relieve(_stack.Clock.NowMicroseconds - heldSince, how);
                RunRelief();
                strikes = 0;
            }
        }

        // Stopping: an engine thread still held must not wait for a hand-back that will not come.
        _handBack.Set();
    }

    /// <summary>
    /// Whether the continuation holding the engine thread is the reason it is held: the thread is blocked (sleeping or in
    /// an uninterruptible wait: a synchronous wait, I/O), or it ran on a CPU for at least half the time since the baseline
    /// (a long computation). Not when it is runnable but waiting for a core (the machine is busy: relief would not help,
    /// and the connection is not at fault). Where the kernel does not say, the wall time decides.
    /// </summary>
    private bool HeldByApplication(long baselineWall, long baselineRun, out string how)
    {
        if (_engineActivity is not { } activity || baselineRun < 0 || !activity.TryRead(out var state, out var run))
        {
            how = "held";
            return true;
        }

        var wallMicroseconds = _stack.Clock.NowMicroseconds - baselineWall;
        var runMicroseconds = (run - baselineRun) / 1000;
        if (state is 'S' or 'D')
        {
            how = state == 'S' ? "blocked (waiting)" : "blocked (uninterruptible)";
            return true;
        }

        if (runMicroseconds < wallMicroseconds / 2)
        {
            // Runnable but waiting for a core: looked at again at the next look, without a string made for nothing.
            how = "";
            return false;
        }

        how = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"computing ({runMicroseconds} of the last {wallMicroseconds} µs on a CPU)");
        return true;
    }

    /// <summary>Sleeps until a continuation starts, unless one started since <paramref name="seen"/> was read.</summary>
    private void Park(long seen)
    {
        _watcherWake.Reset();
        Interlocked.Exchange(ref _watcherParked, 1);
        if (_stack.AfterTurn.Started != seen || Volatile.Read(ref _phase) == Application || _stopping)
        {
            Interlocked.Exchange(ref _watcherParked, 0);
            return;
        }

        _watcherWake.Wait();
    }

    /// <summary>The watcher runs the loop until the engine thread is back (<see cref="TakeLoopBack"/>), then hands it over.</summary>
    private void RunRelief()
    {
        while (Volatile.Read(ref _phase) == Relieved && !_stopping)
        {
            TurnContained(runApplication: false);
        }

        _stack.AfterTurn.Resume();
        Volatile.Write(ref _phase, Loop);
        _handBack.Set();
    }
}
