using BenchmarkDotNet.Attributes;
using Vso.Transport.Engine;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// The connections' timer queue alone: the heap it replaced (<see cref="HeapTimerQueueBaseline"/>) against the
/// timer wheel, with the same owner and the same sync rule (arm when the connection's earliest deadline changes,
/// cancel when it has none). One operation handles all <see cref="Connections"/> connections once: divide by it for a figure per connection.
/// </summary>
[MemoryDiagnoser]
public class TimerBenchmarks
{
    private const long Rto = 200_000;
    private const long Start = 1_000_000;

    private TimerBenchOwner[] _owners = null!;
    private HeapTimerQueueBaseline _heap = null!;
    private TimerWheel<TimerBenchOwner> _wheel = null!;
    private long _now;

    public enum QueueKind
    {
        Heap,
        Wheel,
    }

    [Params(QueueKind.Heap, QueueKind.Wheel)]
    public QueueKind Queue { get; set; }

    [Params(1_000, 10_000)]
    public int Connections { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _owners = new TimerBenchOwner[Connections];
        for (var i = 0; i < _owners.Length; i++)
        {
            _owners[i] = new TimerBenchOwner();
            _owners[i].Entry = new TimerEntry<TimerBenchOwner>(_owners[i]);
        }

        _heap = new HeapTimerQueueBaseline();
        _wheel = new TimerWheel<TimerBenchOwner>();
        _now = Start;
    }

    /// <summary>Every connection arms a timer (RTO-like, spread over a millisecond), then cancels it; the queue then runs past them.</summary>
    [Benchmark(Description = "arm + cancel")]
    public int ArmCancel()
    {
        _now += 1_000;
        for (var i = 0; i < _owners.Length; i++)
        {
            Set(_owners[i], _now + Rto + (i % 1_000));
        }

        for (var i = 0; i < _owners.Length; i++)
        {
            Set(_owners[i], 0);
        }

        return RunDue(_now + Rto + 1_000);
    }

    /// <summary>
    /// Steady bulk traffic: every millisecond each connection's RTO moves 1 ms later (an ACK for new data), and
    /// the queue runs to now; nothing fires, but the heap meets the entries each re-arm left behind.
    /// </summary>
    [Benchmark(Description = "re-arm, run to now")]
    public int ReArm()
    {
        _now += 1_000;
        for (var i = 0; i < _owners.Length; i++)
        {
            Set(_owners[i], _now + Rto + (i % 1_000));
        }

        return RunDue(_now);
    }

    /// <summary>Every connection arms a timer within the next Connections microseconds, and all fire.</summary>
    [Benchmark(Description = "arm, all fire")]
    public int ArmAndFire()
    {
        for (var i = 0; i < _owners.Length; i++)
        {
            Set(_owners[i], _now + 1 + ((i * 7919L) % _owners.Length));
        }

        _now += _owners.Length + 1;
        return RunDue(_now);
    }

    private void Set(TimerBenchOwner owner, long deadline)
    {
        owner.NextDeadline = deadline;
        if (Queue == QueueKind.Heap)
        {
            _heap.Sync(owner);
            return;
        }

        // The rule of TimerQueue.Sync.
        var entry = owner.Entry!;
        if (deadline == entry.Deadline)
        {
            return;
        }

        if (deadline == 0)
        {
            _wheel.Cancel(entry);
        }
        else
        {
            _wheel.Arm(entry, deadline);
        }
    }

    private int RunDue(long now)
    {
        var fired = 0;
        if (Queue == QueueKind.Heap)
        {
            while (_heap.TryPopDue(now, out var owner))
            {
                owner.NextDeadline = 0;
                fired++;
            }

            _ = _heap.NextDeadline;
            return fired;
        }

        while (_wheel.TryPopDue(now, out var entry))
        {
            entry.Owner.NextDeadline = 0;
            fired++;
        }

        _ = _wheel.NextDeadline;
        return fired;
    }
}

/// <summary>What the timer queue sees of a connection: its earliest deadline and the queue's bookkeeping.</summary>
internal sealed class TimerBenchOwner
{
    public long NextDeadline { get; set; }

    /// <summary>The heap's record of the deadline it holds (the old TcpConnection.ScheduledDeadline).</summary>
    public long ScheduledDeadline { get; set; }

    /// <summary>The wheel's entry (TcpConnection.TimerEntry).</summary>
    public TimerEntry<TimerBenchOwner>? Entry { get; set; }
}
