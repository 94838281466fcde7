using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Vso.Transport.Interface;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Engine;

/// <summary>
/// The event loop of one shard of a stack on its own link (queue): applications' work, received frames, due timers, then
/// output, then one flush of the transmit batch. One thread at a time, under <see cref="Gate"/>: the
/// <see cref="EngineThread"/> in production (or, while it sleeps, a thread that posted work: <see cref="PollPostedWork"/>),
/// a virtual-time driver in tests.
/// No exception leaves <see cref="Poll"/>: each entry contains what escapes it (<see cref="EngineFaults"/>), and the
/// connections inside an entry are contained one by one (TcpLayer), so one failure aborts at most its connection.
/// </summary>
internal sealed class NetworkStack : IDisposable
{
    private const int ReceiveBudget = 256;
    private readonly ConcurrentQueue<IEngineWork> _work = new();
    private readonly ILink _link;
    private readonly EngineFaults _faults;

    /// <summary>
    /// Held for each turn. An application thread takes it to act on its connection synchronously (a receive that completes
    /// at once, a peek, a send that may be refused) as if it were the engine, instead of posting and waiting a turn.
    /// Reentrant, so a continuation that runs inline on the engine thread may take it again.
    /// </summary>
    private readonly Lock _gate = new();

    private IFrameReceiver _receiver;
    private ShardRouter? _router;
    private ShardHandoverQueue[] _inbound = [];

    public NetworkStack(ILink link, Ipv4Address address, int prefixLength, Ipv4Address gateway, TcpSettings settings, IClock clock, Meter meter, ILogger log, int shardIndex = 0, int shardCount = 1)
    {
        _link = link;
        Clock = clock;
        ShardIndex = shardIndex;
        Interface = new NetworkInterface(link, address, prefixLength, gateway, clock, new WireCounters(meter, shardIndex), log, new MartianCounters(meter, shardIndex));
        _faults = new EngineFaults(Interface, clock, meter, log);
        Tcp = new TcpLayer(Interface, Interface.Counters, settings, clock, new TcpMetrics(meter, shardIndex), log) { Faults = _faults, ShardIndex = shardIndex, ShardCount = shardCount };
        _faults.Tcp = Tcp;
        Interface.Register(Tcp);
        _receiver = Interface;
        AfterTurn = new AfterTurnQueue(this, meter, log);
        if (link.Counters is { } counters)
        {
            LinkMetrics.Register(meter, counters, shardIndex);
        }
    }

    /// <summary>This shard's place among the stack's shards (0 for a stack of one).</summary>
    public int ShardIndex { get; }

    /// <summary>
    /// Joins the stack's other shards: frames the link receives go through a <see cref="ShardRouter"/> to their owner,
    /// and the frames others hand over arrive through <paramref name="inbound"/>. Before the first turn.
    /// </summary>
    public void JoinShards(NetworkStack[] shards, ShardHandoverQueue?[] outbound, ShardHandoverQueue[] inbound, Meter meter)
    {
        _router = new ShardRouter(this, ShardIndex, shards, outbound, meter);
        _receiver = _router;
        _inbound = inbound;
    }

    /// <summary>Frames this shard handed to another shard.</summary>
    public long HandedOver => _router?.HandedOver ?? 0;

    /// <summary>Frames that belonged to one other shard (segments the link put on the wrong queue), ARP excluded.</summary>
    public long Misrouted => _router?.Misrouted ?? 0;

    /// <summary>Frames this shard could not hand over: the owner's queue was full.</summary>
    public long HandoverDrops => _router?.HandoverDrops ?? 0;

    /// <summary>Frames other shards handed to this one.</summary>
    public long HandedIn { get; private set; }

    public IClock Clock { get; }

    public NetworkInterface Interface { get; }

    public TcpLayer Tcp { get; }

    public ILink Link => _link;

    /// <summary>Exceptions that escaped frame processing or an entry of the loop and were contained (should stay 0).</summary>
    public long ContainedExceptions => Interface.ContainedExceptions + _faults.Count;

    public EngineFaults Faults => _faults;

    /// <summary>Application continuations to run on the loop's thread after the turn that scheduled them.</summary>
    public AfterTurnQueue AfterTurn { get; }

    /// <summary>Set by the engine thread owner so that posted work can wake it.</summary>
    public Action? Wake { get; set; }

    public void Post(IEngineWork work)
    {
        _work.Enqueue(work);
        Wake?.Invoke();
    }

    public void Start()
    {
        // One announcement per stack, not per shard.
        if (ShardIndex == 0)
        {
            Interface.AnnounceAddress();
        }

        Interface.Flush();
    }

    /// <summary>Exclusion with the engine's turns (<see cref="Poll"/>); any thread.</summary>
    public Lock Gate => _gate;

    private bool _inTurn;

    [ThreadStatic]
    private static int t_turns;

    /// <summary>The calling thread is inside some shard's turn (an inline continuation, a hand-over between shards).</summary>
    public static bool CallerInTurn => t_turns > 0;

    /// <summary>
    /// For the holder of <see cref="Gate"/>: a turn is running, so the holder is the engine thread inside it (a continuation
    /// run inline), possibly in the middle of a connection's work.
    /// </summary>
    public bool InTurn => _inTurn;

    /// <summary>One turn of the loop. Returns whether anything happened.</summary>
    public bool Poll() => Turn(engineWork: true);

    /// <summary>
    /// A turn for a thread that posted work while the engine sleeps: the posted work and the output it makes, no frames
    /// and no timers, which stay the engine's (the caller pays for its own sends only, not for the engine's receiving).
    /// </summary>
    public bool PollPostedWork() => Turn(engineWork: false);

    private bool Turn(bool engineWork)
    {
        lock (_gate)
        {
            _inTurn = true;
            t_turns++;
            try
            {
                var progress = RunPostedWork();
                if (engineWork)
                {
                    progress |= ReceiveFrames();
                    progress |= RunTimers();
                }

                progress |= ProcessOutput();
                progress |= Flush();
                return progress;
            }
            finally
            {
                _inTurn = false;
                t_turns--;
            }
        }
    }

    // Connections are contained one by one inside the TCP layer; these catch what escapes the layer itself.
    private bool RunTimers()
    {
        try
        {
            return Tcp.RunTimers(Clock.NowMicroseconds);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _faults.Contain(EngineEntry.Timers, ex, connection: null);
            return true;
        }
    }

    private bool ProcessOutput()
    {
        try
        {
            return Tcp.ProcessOutput();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _faults.Contain(EngineEntry.Output, ex, connection: null);
            return true;
        }
    }

    private bool RunPostedWork()
    {
        var progress = false;
        while (_work.TryDequeue(out var work))
        {
            progress = true;
            try
            {
                work.Execute();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _faults.Contain(EngineEntry.PostedWork, ex, work.Connection);
            }
        }

        return progress;
    }

    /// <summary>
    /// Frames from the link, up to the budget. A segment's processing is contained per connection (TcpLayer.OnSegment)
    /// and a frame's per frame (NetworkInterface.OnFrame); what escapes here is the link's own failure, which ends the
    /// receiving of this turn.
    /// </summary>
    private bool ReceiveFrames()
    {
        var progress = false;
        for (var received = 0; received < ReceiveBudget;)
        {
            int n;
            try
            {
                n = _link.Receive(_receiver, ReceiveBudget - received);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _faults.Contain(EngineEntry.LinkReceive, ex, connection: null);
                return true;
            }

            if (n == 0)
            {
                break;
            }

            received += n;
            progress = true;
        }

        if (_router is not null)
        {
            _router.WakeReceivers();
            progress |= ReceiveHandedOver();
        }

        return progress;
    }

    /// <summary>The frames other shards handed to this one, a budget's worth from each.</summary>
    private bool ReceiveHandedOver()
    {
        var progress = false;
        foreach (var queue in _inbound)
        {
            int n;
            try
            {
                n = queue.Drain(this, ReceiveBudget);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _faults.Contain(EngineEntry.LinkReceive, ex, connection: null);
                n = 1;
            }

            if (n > 0)
            {
                HandedIn += n;
                progress = true;
            }
        }

        return progress;
    }

    private bool HasHandedOverFrames
    {
        get
        {
            foreach (var queue in _inbound)
            {
                if (!queue.IsEmpty)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>The end-of-turn flush. A link that fails to send loses the batch (the frames are lost as on a wire; TCP repairs).</summary>
    private bool Flush()
    {
        try
        {
            return Interface.Flush();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            _faults.Contain(EngineEntry.LinkTransmit, ex, connection: null);
            return true;
        }
    }

    /// <summary>When the loop next has something to do by itself (a timer, a frame the link holds).</summary>
    public long NextEventMicroseconds => Math.Min(Tcp.NextDeadline, _link.NextEventMicroseconds);

    /// <summary>Work posted, or frames handed over by another shard: the engine must not sleep.</summary>
    public bool HasPendingWork => !_work.IsEmpty || (_inbound.Length > 0 && HasHandedOverFrames);

    public void Dispose()
    {
        lock (_gate)
        {
            Tcp.ShutdownAll();
            Interface.Flush();
        }
    }
}
