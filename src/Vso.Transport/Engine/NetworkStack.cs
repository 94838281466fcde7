using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Vso.Transport.Interface;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Engine;

/// <summary>
/// The event loop of one stack on one link: applications' work, received frames, due timers, then
/// output, then one flush of the transmit batch. Single-threaded: whoever calls <see cref="Poll"/> is the
/// engine thread (the <see cref="EngineThread"/> in production, a virtual-time driver in tests).
/// </summary>
internal sealed class NetworkStack : IDisposable
{
    private const int ReceiveBudget = 256;
    private readonly ConcurrentQueue<IEngineWork> _work = new();
    private readonly ILink _link;

    public NetworkStack(ILink link, Ipv4Address address, int prefixLength, Ipv4Address gateway, TcpSettings settings, IClock clock, Meter meter, ILogger log)
    {
        _link = link;
        Clock = clock;
        Interface = new NetworkInterface(link, address, prefixLength, gateway, clock, new WireCounters(meter), log);
        Tcp = new TcpLayer(Interface, Interface.Counters, settings, clock, new TcpMetrics(meter), log);
        Interface.Register(Tcp);
    }

    public IClock Clock { get; }

    public NetworkInterface Interface { get; }

    public TcpLayer Tcp { get; }

    public ILink Link => _link;

    /// <summary>Exceptions that escaped frame processing and were contained (should stay 0).</summary>
    public long ContainedExceptions => Interface.ContainedExceptions;

    /// <summary>Set by the engine thread owner so that posted work can wake it.</summary>
    public Action? Wake { get; set; }

    public void Post(IEngineWork work)
    {
        _work.Enqueue(work);
        Wake?.Invoke();
    }

    public void Start()
    {
        Interface.AnnounceAddress();
        Interface.Flush();
    }

    /// <summary>One turn of the loop. Returns whether anything happened.</summary>
    public bool Poll()
    {
        var progress = false;
        while (_work.TryDequeue(out var work))
        {
            progress = true;
            work.Execute();
        }

        for (var received = 0; received < ReceiveBudget;)
        {
            var n = _link.Receive(Interface, ReceiveBudget - received);
            if (n == 0)
            {
                break;
            }

            received += n;
            progress = true;
        }

        progress |= Tcp.RunTimers(Clock.NowMicroseconds);
        progress |= Tcp.ProcessOutput();
        progress |= Interface.Flush();
        return progress;
    }

    /// <summary>When the loop next has something to do by itself (a timer, a frame the link holds).</summary>
    public long NextEventMicroseconds => Math.Min(Tcp.NextDeadline, _link.NextEventMicroseconds);

    public bool HasPendingWork => !_work.IsEmpty;

    public void Dispose()
    {
        Tcp.ShutdownAll();
        Interface.Flush();
    }
}
