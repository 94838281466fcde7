using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Vso.Transport.Api;

namespace Vso.Transport.Engine;

/// <summary>
/// Application continuations a turn scheduled (issue 12: the input pipe's reader, so that a request is answered without a
/// thread hop), run on the loop's own thread right after that turn, outside the gate: application code never holds the
/// engine's state, and a continuation that blocks can be relieved (<see cref="EngineThread"/> moves the loop to another
/// thread meanwhile, and the connection's continuations go to the thread pool from then on).
/// Entries are taken only from the loop's thread inside a turn of this shard; everything else runs elsewhere.
/// </summary>
internal sealed class AfterTurnQueue
{
    private static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(1);

    private readonly NetworkStack _shard;
    private readonly Counter<long> _stalls;
    private readonly LogRateLimiter _stallLog = new(LogInterval); // the relieving thread's only
    private readonly ILogger _log;
    private Entry[] _entries = new Entry[16];
    private int _count;          // the loop's thread, in a turn
    private int _next;           // the next entry to start; claimed with Interlocked (the loop's thread, a relieving thread)
    private VsoConnectionEndpoint? _running;  // whose continuation the loop's thread is running, null between entries
    private long _started;
    private long _stallCount;
    private int _loopThreadId;
    private volatile bool _suspended;

    private struct Entry
    {
        public Action<object?>? Continuation;
        public object? State;
        public VsoConnectionEndpoint? Endpoint;
    }

    public AfterTurnQueue(NetworkStack shard, Meter meter, ILogger log)
    {
        _shard = shard;
        _log = log;
        _stalls = meter.CreateCounter<long>("vso.engine.application_stalls", unit: "{stall}", description: "Application continuations that held an engine thread so long that its loop moved to a relief thread.");
    }

    /// <summary>Continuations started so far (any thread): a watcher sees the loop's thread move on by it.</summary>
    public long Started => Volatile.Read(ref _started);

    /// <summary>Whether the loop's thread is inside a continuation now (any thread).</summary>
    public bool Running => Volatile.Read(ref _running) is not null;

    /// <summary>Continuations that held the engine thread so long that its loop was relieved.</summary>
    public long Stalls => Interlocked.Read(ref _stallCount);

    public bool IsEmpty => _count == 0;

    /// <summary>The thread that runs the loop (its turns, then this queue); set before its first turn.</summary>
    public void AttachLoop(int managedThreadId) => _loopThreadId = managedThreadId;

    /// <summary>
    /// From a turn of this shard: queues <paramref name="continuation"/> to run after the turn, on the loop's thread. False
    /// (the caller runs it elsewhere) on any other thread, while the loop is relieved, or for a connection that stalled before.
    /// </summary>
    public bool TryAdd(Action<object?> continuation, object? state, VsoConnectionEndpoint endpoint)
    {
        if (_suspended || endpoint.ApplicationStalled || !_shard.InTurn || Environment.CurrentManagedThreadId != _loopThreadId)
        {
            return false;
        }

        if (_count == _entries.Length)
        {
            Array.Resize(ref _entries, _count * 2);
        }

        _entries[_count++] = new Entry { Continuation = continuation, State = state, Endpoint = endpoint };
        return true;
    }

    /// <summary>
    /// The loop's thread, after a turn, outside the gate: runs the queued continuations in order. An exception one throws
    /// is contained as the engine's own (its connection aborted). Entries a relieving thread took meanwhile are not run
    /// here. <see cref="Clear"/> follows, once no relieving thread can be taking entries.
    /// </summary>
    public void Run()
    {
        while (TryClaim(out var entry))
        {
            Volatile.Write(ref _running, entry.Endpoint);
            Interlocked.Increment(ref _started);
            try
            {
                entry.Continuation!(entry.State);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                lock (_shard.Gate)
                {
                    _shard.Faults.Contain(EngineEntry.Application, ex, entry.Endpoint!.Tcp);
                }
            }
        }

        Volatile.Write(ref _running, null);
    }

    /// <summary>Takes the next entry not yet started, for whichever thread claims it first (the loop's, a relieving one).</summary>
    private bool TryClaim(out Entry entry)
    {
        var i = Interlocked.Increment(ref _next) - 1;
        if (i >= _count)
        {
            entry = default;
            return false;
        }

        entry = _entries[i];
        _entries[i] = default;
        return true;
    }

    /// <summary>The loop's thread, after <see cref="Run"/> and any relief: the queue is empty for the next turn.</summary>
    public void Clear()
    {
        _count = 0;
        Volatile.Write(ref _next, 0);
    }

    /// <summary>
    /// A relieving thread, once the loop's thread has been held by one continuation too long: that continuation's
    /// connection leaves the engine thread for good, the entries after it go to the thread pool, and new entries are
    /// refused until <see cref="Resume"/>.
    /// </summary>
    /// <param name="how">What the thread was doing, for the log: blocked (waiting), computing.</param>
    public void Relieve(long stalledMicroseconds, string how)
    {
        _suspended = true;

        // The loop's thread may have moved to the next entry since the watcher looked: then that one is marked, harmlessly.
        var stalled = Volatile.Read(ref _running);
        stalled?.MarkApplicationStalled();
        Interlocked.Increment(ref _stallCount);
        _stalls.Add(1);
        while (TryClaim(out var entry))
        {
            ThreadPool.UnsafeQueueUserWorkItem(entry.Continuation!, entry.State, preferLocal: false);
        }

        if (_stallLog.TryAcquire(_shard.Clock.NowMicroseconds, out var suppressed))
        {
            _log.ApplicationStalledEngine(_shard.ShardIndex, how, stalledMicroseconds / 1000, stalled?.RemoteEndPoint?.ToString() ?? "?", suppressed);
        }
    }

    /// <summary>The loop's thread has its loop back: entries are taken again.</summary>
    public void Resume() => _suspended = false;
}
