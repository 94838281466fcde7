using Vso.Transport.Native;

namespace Vso.Transport.Engine;

/// <summary>
/// Runs a stack's loop on a dedicated thread in real time: poll, then sleep until the next timer,
/// a frame, or work posted by the application, whichever comes first. On a link that can block (AF_PACKET,
/// TAP) the thread sleeps in the link's poll(2), which also watches an eventfd that posted work signals;
/// the eventfd is written only while the thread sleeps, so a busy engine makes no wake-up system calls.
/// With a busy-poll budget, an idle engine first polls for that long while traffic is steady (the last idle spell was
/// shorter than the budget), so steady request traffic is taken without wake-ups; an engine whose idle spells run longer
/// goes straight to sleep, so an idle server costs no CPU.
/// After a turn the thread runs the application continuations that turn scheduled (<see cref="AfterTurnQueue"/>); one
/// that blocks is relieved (EngineThread.Relief.cs).
/// The thread never dies of an exception: what escapes a turn is contained (<see cref="EngineFaults"/>) and the loop goes on.
/// </summary>
internal sealed partial class EngineThread : IDisposable
{
    /// <summary>Longest sleep in a blocking link when no timer is due: a safety net, wake-ups are explicit.</summary>
    private const long MaxBlockingWaitMicros = 100_000;

    private readonly NetworkStack _stack;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly bool _linkBlocks;
    private readonly long _busyPollMicros;
    private readonly bool _turnOnCaller;
    private long _sleepsUntil = long.MaxValue;   // while _sleeping: when the engine's wait times out
    private volatile bool _stopping;
    private int _sleeping;
    private bool _steady;                        // the last idle spell ended within the busy-poll budget
    private readonly DeferredTurn _deferredTurn;
    private int _deferredQueued;                 // a DeferredTurn is queued and has not started yet

    public EngineThread(NetworkStack stack, string name, int busyPollMicros = 0, bool turnOnCaller = false)
    {
        _stack = stack;
        _busyPollMicros = busyPollMicros;
        _turnOnCaller = turnOnCaller;
        _linkBlocks = stack.Link.CanBlock;
        stack.Wake = WakeUp;
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _watcher = new Thread(Watch) { IsBackground = true, Name = ReliefThreadName(name) };
        _deferredTurn = new DeferredTurn(this);
    }

    /// <summary>The caller's turn of a thread-pool thread, queued to run after its current work item.</summary>
    private sealed class DeferredTurn(EngineThread owner) : IThreadPoolWorkItem
    {
        public void Execute() => owner.RunDeferredTurn();
    }

    /// <summary>
    /// Runs what was posted since the turn was queued, in one turn, on a thread-pool thread; wakes the engine if the turn
    /// could not run here (another thread holds the gate) or left it something to do sooner than it would wake.
    /// </summary>
    private void RunDeferredTurn()
    {
        Volatile.Write(ref _deferredQueued, 0);
        if (Volatile.Read(ref _sleeping) == 1 && TryTurnOnCaller())
        {
            return;
        }

        InterruptSleep();
    }

    /// <summary>Ends the engine's blocking wait if it is in one (the flag is cleared once, so one interrupt per sleep).</summary>
    private void InterruptSleep()
    {
        if (Interlocked.Exchange(ref _sleeping, 0) == 1)
        {
            _stack.Link.Interrupt();
        }
    }

    public void Start()
    {
        _thread.Start();
        _watcher.Start();
    }

    private void WakeUp()
    {
        if (_linkBlocks)
        {
            if (_turnOnCaller && Volatile.Read(ref _sleeping) == 1)
            {
                // On a thread-pool thread the turn runs right after the current work item, on the same thread (its local
                // queue): every flush that work item and the others make meanwhile leaves in that one turn, as Kestrel's
                // Sockets transport sends once what several flushes wrote (h2c: about one frame per ten responses
                // instead of four). Other threads run it at once.
                if (Thread.CurrentThread.IsThreadPoolThread)
                {
                    if (Interlocked.Exchange(ref _deferredQueued, 1) == 0)
                    {
                        ThreadPool.UnsafeQueueUserWorkItem(_deferredTurn, preferLocal: true);
                    }

                    return;
                }

                if (TryTurnOnCaller())
                {
                    return;
                }
            }

            InterruptSleep();
        }
        else
        {
            _wake.Set();
        }
    }

    /// <summary>
    /// The engine sleeps and an application thread posted work: that thread runs the posted work and the output it makes
    /// (<see cref="NetworkStack.PollPostedWork"/>; frames and timers stay the engine's) itself under the gate, as a
    /// socket's send() runs the kernel's TCP in the caller, instead of waking the engine (a context switch each way).
    /// Not from inside a turn (an inline continuation, a hand-over), and not if another thread holds the gate: the
    /// engine is woken then as before. A turn that armed a timer due before the engine's wait ends wakes it, so that it
    /// sleeps no longer than the timer allows.
    /// </summary>
    private bool TryTurnOnCaller()
    {
        var gate = _stack.Gate;
        if (NetworkStack.CallerInTurn || gate.IsHeldByCurrentThread || !gate.TryEnter())
        {
            return false;
        }

        long next = long.MinValue;
        try
        {
            _stack.PollPostedWork();
            next = _stack.NextEventMicroseconds;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _stack.Faults.Contain(EngineEntry.EngineThread, ex, connection: null);
        }
        finally
        {
            gate.Exit();
        }

        return !_stack.HasPendingWork && next >= Volatile.Read(ref _sleepsUntil);
    }

    /// <summary>
    /// The stack's next deadline, read under the gate: with turns on calling threads, a turn may be arming timers while the
    /// engine decides how long to sleep, and the timer wheel's cached deadline must not be computed against it.
    /// </summary>
    private long NextEvent()
    {
        lock (_stack.Gate)
        {
            return _stack.NextEventMicroseconds;
        }
    }

    private void Run()
    {
        _stack.AfterTurn.AttachLoop(Environment.CurrentManagedThreadId);
        _engineActivity = ThreadActivity.OfCurrentThread();
        try
        {
            _stack.Start();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _stack.Faults.Contain(EngineEntry.EngineThread, ex, connection: null);
        }

        while (!_stopping)
        {
            TurnContained(runApplication: true);
        }
    }

    /// <summary>
    /// One turn and, on the engine thread, the continuations it scheduled (<paramref name="runApplication"/>; not on the
    /// watcher relieving it, whose turns schedule none while the engine thread's own are still queued).
    /// </summary>
    private void TurnContained(bool runApplication)
    {
        try
        {
            Turn();
            if (runApplication && !_stack.AfterTurn.IsEmpty)
            {
                RunApplication();
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Poll contains its own entries; this is the link's wait or clock failing. Go on, without spinning on a
            // link that fails at once every time.
            _stack.Faults.Contain(EngineEntry.EngineThread, ex, connection: null);
            Thread.Sleep(1);
        }
    }

    /// <summary>One turn: poll, then sleep until the next event if there was nothing to do.</summary>
    private void Turn()
    {
        if (!_linkBlocks)
        {
            _wake.Reset();
        }

        if (_stack.Poll() || _stack.HasPendingWork)
        {
            return;
        }

        var now = _stack.Clock.NowMicroseconds;
        var untilNext = NextEvent() - now;
        if (untilNext <= 0)
        {
            return;
        }

        if (_busyPollMicros > 0 && _steady)
        {
            if (BusyPoll(now + Math.Min(untilNext, _busyPollMicros)))
            {
                return;
            }

            // A timer that fell due within the budget says nothing about the traffic.
            _steady = untilNext < _busyPollMicros;
            now = _stack.Clock.NowMicroseconds;
            untilNext = NextEvent() - now;
            if (untilNext <= 0)
            {
                return;
            }
        }

        Sleep(untilNext);
        if (_busyPollMicros > 0)
        {
            _steady = _stack.Clock.NowMicroseconds - now <= _busyPollMicros;
        }
    }

    /// <summary>
    /// Polls the link and the work queue until something comes or the clock reaches <paramref name="deadline"/>; true if
    /// something came. The sleeping flag stays clear meanwhile, so the application's posts write no eventfd either.
    /// </summary>
    private bool BusyPoll(long deadline)
    {
        while (!_stopping)
        {
            if (_stack.Poll() || _stack.HasPendingWork)
            {
                return true;
            }

            if (_stack.Clock.NowMicroseconds >= deadline)
            {
                return false;
            }

            Thread.SpinWait(16);
        }

        return true;
    }

    private void Sleep(long untilNext)
    {
        if (_linkBlocks)
        {
            // Announce the sleep, then look at the queue once more: a poster either sees the flag and
            // interrupts the wait, or enqueued before the flag and we see its work here.
            var wait = Math.Min(untilNext, MaxBlockingWaitMicros);
            Volatile.Write(ref _sleepsUntil, _stack.Clock.NowMicroseconds + wait);
            Interlocked.Exchange(ref _sleeping, 1);
            try
            {
                if (!_stack.HasPendingWork && !_stopping && !LoopWanted)
                {
                    _stack.Link.WaitForFrames(TimeSpan.FromTicks(wait * TimeSpan.TicksPerMicrosecond));
                }
            }
            finally
            {
                Volatile.Write(ref _sleeping, 0);
            }
        }
        else if (!_stack.Link.WaitForFrames(TimeSpan.Zero))
        {
            _wake.Wait(TimeSpan.FromTicks(Math.Min(untilNext, 1_000) * TimeSpan.TicksPerMicrosecond));
        }
    }

    /// <summary>Ends the loop and waits for the thread (unless called from it).</summary>
    public void Stop()
    {
        _stopping = true;
        _wake.Set();
        _watcherWake.Set();
        _stack.Link.Interrupt();
        if (Thread.CurrentThread != _thread && _thread.IsAlive)
        {
            _thread.Join();
        }

        if (Thread.CurrentThread != _watcher && _watcher.IsAlive)
        {
            _watcher.Join();
        }
    }

    public void Dispose()
    {
        Stop();
        _wake.Dispose();
        _watcherWake.Dispose();
        _handBack.Dispose();
    }
}
