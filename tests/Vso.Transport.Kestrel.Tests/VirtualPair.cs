using System.Collections.Concurrent;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// The transport's server stack (built by a <see cref="VsoTransportFactory"/> as Kestrel would) and a plain client
/// <see cref="VsoStack"/> on a simulated wire, both stepped by one <see cref="VirtualTimeDriver"/> on the test's thread.
/// The test body runs as an async function under a single-threaded synchronization context that the driver loop pumps,
/// and the transport runs the application's continuations inline (ApplicationOnEngineThread), so a test is one thread in
/// virtual time: timers and delays cost no wall time, and the same run repeats.
/// </summary>
internal sealed class VirtualPair : IDisposable
{
    private static readonly TimeSpan VirtualLimit = TimeSpan.FromMinutes(2);

    private readonly VirtualTimeDriver _driver;
    private readonly PumpedContext _context = new();
    private readonly List<(long DueMicroseconds, TaskCompletionSource Done)> _delays = [];
    private readonly List<(Func<bool> Condition, string What, long DueMicroseconds, TaskCompletionSource Done)> _conditions = [];

    private VirtualPair(VirtualTimeDriver driver, VsoTransportFactory factory, VsoStack client)
    {
        _driver = driver;
        Factory = factory;
        Client = client;
    }

    public VsoTransportFactory Factory { get; }

    public VsoStack Client { get; }

    /// <summary>The virtual time now.</summary>
    public TimeSpan Now => _driver.Now;

    /// <summary>Runs <paramref name="test"/> on a fresh pair in virtual time until it completes, and rethrows what it threw.</summary>
    /// <param name="options">The server's transport options (ApplicationOnEngineThread is set); <see cref="SimulatedPair.DefaultOptions"/> when null.</param>
    public static void Run(Func<VirtualPair, Task> test, VsoTransportOptions? options = null)
    {
        var previous = SynchronizationContext.Current;
        using var pair = Create(options);
        SynchronizationContext.SetSynchronizationContext(pair._context);
        try
        {
            var body = test(pair);
            pair.DriveUntil(body);
            body.GetAwaiter().GetResult();
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
    }

    /// <summary>Completes after <paramref name="duration"/> of virtual time, every event on the way handled.</summary>
    public Task Delay(TimeSpan duration)
    {
        var done = new TaskCompletionSource();
        _delays.Add((_driver.Clock.NowMicroseconds + (long)duration.TotalMicroseconds, done));
        return done.Task;
    }

    /// <summary>Completes once <paramref name="condition"/> holds (checked between steps); fails after two virtual minutes.</summary>
    public Task Until(Func<bool> condition, string what)
    {
        var done = new TaskCompletionSource();
        _conditions.Add((condition, what, _driver.Clock.NowMicroseconds + (long)VirtualLimit.TotalMicroseconds, done));
        return done.Task;
    }

    public void Dispose()
    {
        Client.Dispose();
        Factory.Dispose();
    }

    private static VirtualPair Create(VsoTransportOptions? options)
    {
        options ??= SimulatedPair.DefaultOptions();
        options.ApplicationOnEngineThread = true;
        var driver = new VirtualTimeDriver();
        var (a, b) = SimulatedLink.CreatePair(driver.Clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMicroseconds(50) });
        var client = new VsoStack(a, new VsoStackOptions { Address = System.Net.IPAddress.Parse(SimulatedPair.ClientAddress), PrefixLength = 24, InlineContinuations = true, Tcp = new Tcp.TcpSettings { Nagle = false } }, driver.Clock);
        driver.Add(client);
        var factory = new VsoTransportFactory(
            options,
            () =>
            {
                var stack = new VsoStack(b, StackFactory.ToStackOptions(options), driver.Clock);
                driver.Add(stack);
                return stack;
            },
            NullLoggerFactory.Instance);
        return new VirtualPair(driver, factory, client);
    }

    /// <summary>
    /// Steps the stacks, the posted continuations, the delays and the conditions until <paramref name="body"/> completes.
    /// Virtual time jumps to the next event of a stack or a delay when nothing else can happen.
    /// </summary>
    private void DriveUntil(Task body)
    {
        var end = _driver.Clock.NowMicroseconds + (long)(VirtualLimit.TotalMicroseconds * 2);
        var idleWaits = 0;
        while (!body.IsCompleted)
        {
            var progress = _context.RunPosted();
            progress |= CheckConditions();
            _driver.RunIdle();
            if (_context.HasPosted || body.IsCompleted)
            {
                continue;
            }

            progress |= CheckConditions();
            if (progress)
            {
                idleWaits = 0;
                continue;
            }

            var next = Math.Min(_driver.NextEventMicroseconds, NextDelayMicroseconds());
            if (next == long.MaxValue || next > end)
            {
                // Nothing due in virtual time: only work queued outside this thread can move the test on.
                Assert.True(++idleWaits < 500, "the test waits on nothing the driver can step (a deadlock, or work on another thread)");
                _context.WaitForPosted(TimeSpan.FromMilliseconds(10));
                continue;
            }

            _driver.Clock.AdvanceTo(Math.Max(next, _driver.Clock.NowMicroseconds + 1));
            CompleteDueDelays();
            CheckConditions();
        }
    }

    private bool CheckConditions()
    {
        var any = false;
        var now = _driver.Clock.NowMicroseconds;
        for (var i = _conditions.Count - 1; i >= 0; i--)
        {
            var (condition, what, due, done) = _conditions[i];
            if (condition())
            {
                done.TrySetResult();
            }
            else if (now >= due)
            {
                done.TrySetException(new TimeoutException($"not within {VirtualLimit} of virtual time: {what}"));
            }
            else
            {
                continue;
            }

            _conditions.RemoveAt(i);
            any = true;
        }

        return any;
    }

    private long NextDelayMicroseconds()
    {
        var next = long.MaxValue;
        foreach (var (due, _) in _delays)
        {
            next = Math.Min(next, due);
        }

        foreach (var condition in _conditions)
        {
            next = Math.Min(next, condition.DueMicroseconds);
        }

        return next;
    }

    private void CompleteDueDelays()
    {
        var now = _driver.Clock.NowMicroseconds;
        for (var i = _delays.Count - 1; i >= 0; i--)
        {
            if (_delays[i].DueMicroseconds <= now)
            {
                _delays[i].Done.TrySetResult();
                _delays.RemoveAt(i);
            }
        }
    }

    /// <summary>A synchronization context whose posts queue until the driver loop runs them, in order, on its thread.</summary>
    private sealed class PumpedContext : SynchronizationContext
    {
        private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _posted = [];

        public bool HasPosted => _posted.Count > 0;

        public override void Post(SendOrPostCallback d, object? state) => _posted.Add((d, state));

        public override void Send(SendOrPostCallback d, object? state) => d(state);

        public override SynchronizationContext CreateCopy() => this;

        public bool RunPosted()
        {
            var any = false;
            while (_posted.TryTake(out var item))
            {
                item.Callback(item.State);
                any = true;
            }

            return any;
        }

        public void WaitForPosted(TimeSpan timeout)
        {
            if (_posted.TryTake(out var item, timeout))
            {
                item.Callback(item.State);
            }
        }
    }
}
