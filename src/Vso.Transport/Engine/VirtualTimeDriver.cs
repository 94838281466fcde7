using Vso.Transport.Api;

namespace Vso.Transport.Engine;

/// <summary>
/// Drives stacks in virtual time: polls every shard of each until nothing happens, then jumps the clock to the next
/// event (a timer, a frame held by a link). Deterministic: same seeds, same run. Application
/// continuations run inline on this thread, inside the loop.
/// </summary>
public sealed class VirtualTimeDriver
{
    private readonly VirtualClock _clock;
    private VsoStack[] _stacks;

    /// <summary>A driver with its own virtual clock; stacks made with it (<see cref="VsoStack"/>'s constructor) join it.</summary>
    public VirtualTimeDriver()
        : this(new VirtualClock())
    {
    }

    internal VirtualTimeDriver(VirtualClock clock, params VsoStack[] stacks)
    {
        _clock = clock;
        _stacks = stacks;
        foreach (var stack in stacks)
        {
            stack.DrivenVirtually = true;
        }
    }

    internal VirtualClock Clock => _clock;

    /// <summary>The driver's virtual time now; differences between two readings are what matter.</summary>
    public TimeSpan Now => TimeSpan.FromMicroseconds(_clock.NowMicroseconds);

    internal void Add(VsoStack stack)
    {
        stack.DrivenVirtually = true;
        _stacks = [.. _stacks, stack];
    }

    /// <summary>The earliest instant at which a stack has something to do (a timer, a frame in flight); MaxValue: none.</summary>
    internal long NextEventMicroseconds
    {
        get
        {
            var next = long.MaxValue;
            foreach (var stack in _stacks)
            {
                next = Math.Min(next, stack.Core.NextEventMicroseconds);
            }

            return next;
        }
    }

    /// <summary>Polls every stack until all are idle at the current instant.</summary>
    public void RunIdle()
    {
        bool progress;
        var guard = 0;
        do
        {
            progress = false;
            foreach (var stack in _stacks)
            {
                foreach (var shard in stack.Shards)
                {
                    shard.AfterTurn.AttachLoop(Environment.CurrentManagedThreadId);
                    progress |= shard.Poll();
                    if (!shard.AfterTurn.IsEmpty)
                    {
                        shard.AfterTurn.Run();
                        shard.AfterTurn.Clear();
                    }
                }
            }

            if (++guard > 10_000_000)
            {
                throw new InvalidOperationException("Virtual time driver made no progress in time: a livelock.");
            }
        }
        while (progress);
    }

    /// <summary>
    /// Runs until <paramref name="done"/> holds or <paramref name="limit"/> of virtual time passes.
    /// Returns whether the condition was met.
    /// </summary>
    public bool RunUntil(Func<bool> done, TimeSpan limit)
    {
        ArgumentNullException.ThrowIfNull(done);
        var end = _clock.NowMicroseconds + (limit.Ticks / 10);
        while (true)
        {
            RunIdle();
            if (done())
            {
                return true;
            }

            var next = long.MaxValue;
            foreach (var stack in _stacks)
            {
                foreach (var shard in stack.Shards)
                {
                    next = Math.Min(next, shard.NextEventMicroseconds);
                }
            }

            if (next == long.MaxValue || next > end)
            {
                _clock.AdvanceTo(end);
                RunIdle();
                return done();
            }

            _clock.AdvanceTo(Math.Max(next, _clock.NowMicroseconds + 1));
        }
    }

    /// <summary>Lets <paramref name="duration"/> of virtual time pass, handling every event on the way.</summary>
    public void Run(TimeSpan duration) => RunUntil(static () => false, duration);
}
