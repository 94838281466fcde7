using Vso.Transport.Wire;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Tcp.Recovery;
using Vso.Transport.Tests.Tcp;

namespace Vso.Transport.Tests.Robustness;

/// <summary>
/// The engine never dies (issue 10): an exception injected at one entry of the loop, while 100 transfers run
/// at once in virtual time, aborts the one connection it struck; the other 99 complete byte-exact (SHA-256),
/// and the contained exception is counted under its entry. The faults come from test doubles at the seams
/// (a posted work item, a loss-recovery plug-in, a send host, a link, an application continuation), never
/// from flags in the engine.
/// </summary>
public sealed class EngineFaultTests
{
    private const int Transfers = 100;
    private const int Victim = 37;
    private const int TransferBytes = 64 * 1024;

    [Fact]
    public void A_throwing_posted_work_item_aborts_its_connection_only()
    {
        using var run = new TransferRun();
        run.RunUntilUnderway();
        run.Net.Server.Core.Post(new ThrowingWork(run.Servers[Victim].Tcp!));
        run.RunToEnd();

        run.AssertOnlyVictimFailed(Victim, serverSawInjected: true);
        run.AssertContained(run.Net.Server, "posted_work");
    }

    /// <summary>
    /// Issue 12's continuations on the engine thread: one a turn scheduled to run after it (VsoConnectionEndpoint.TryRunAfterTurn,
    /// as the Kestrel transport's input pipe does) throws; it is contained as the engine's own, under "application".
    /// </summary>
    [Fact]
    public void A_continuation_run_after_the_turn_that_throws_aborts_its_connection_only()
    {
        using var run = new TransferRun();
        run.RunUntilUnderway();
        var endpoint = run.Servers[Victim].Endpoint;
        var scheduled = false;
        run.Net.Server.Core.Post(new CallbackWork(() => scheduled = endpoint.TryRunAfterTurn(static _ => throw new InjectedFaultException("continuation after the turn"), null)));
        Assert.False(endpoint.TryRunAfterTurn(static _ => { }, null)); // not from a turn: the caller runs it elsewhere
        run.RunToEnd();

        Assert.True(scheduled);
        run.AssertOnlyVictimFailed(Victim, serverSawInjected: true);
        run.AssertContained(run.Net.Server, "application");
    }

    [Fact]
    public void A_throwing_timer_aborts_its_connection_only()
    {
        var recoveries = new List<TimerFaultRecovery>();
        using var run = new TransferRun(configureServer: tcp => tcp.LossRecovery = sack =>
        {
            var recovery = new TimerFaultRecovery(TcpSettings.DefaultLossRecovery(sack));
            recoveries.Add(recovery);
            return recovery;
        });
        run.RunUntilUnderway();
        var victim = recoveries.Single(r => r.Sender == run.Servers[Victim].Tcp!.Sender);
        victim.ThrowAt(run.Net.Clock.NowMicroseconds + 1_000);
        run.RunToEnd();

        Assert.True(victim.Thrown);
        run.AssertOnlyVictimFailed(Victim, serverSawInjected: true);
        run.AssertContained(run.Net.Server, "timers");
    }

    [Fact]
    public void A_host_that_throws_during_output_aborts_its_connection_only()
    {
        using var run = new TransferRun();
        run.RunUntilUnderway();
        var host = new ThrowingHost(run.Servers[Victim].Endpoint.TcpHost) { ThrowOnIdentify = true };
        run.Servers[Victim].Tcp!.SetHost(host);
        run.RunToEnd();

        Assert.True(host.Thrown);
        run.AssertOnlyVictimFailed(Victim, serverSawInjected: true);
        run.AssertContained(run.Net.Server, "output");
    }

    [Fact]
    public void A_host_that_throws_on_a_received_ACK_aborts_its_connection_only()
    {
        using var run = new TransferRun();
        run.RunUntilUnderway();
        var host = new ThrowingHost(run.Servers[Victim].Endpoint.TcpHost) { ThrowOnAcknowledged = true };
        run.Servers[Victim].Tcp!.SetHost(host);
        run.RunToEnd();

        Assert.True(host.Thrown);
        run.AssertOnlyVictimFailed(Victim, serverSawInjected: true);
        run.AssertContained(run.Net.Server, "link_receive");
    }

    [Fact]
    public void An_application_continuation_that_throws_inline_aborts_its_connection_only()
    {
        using var run = new TransferRun(callbackReceiver: Victim);
        run.RunUntilUnderway();
        run.CallbackReceiver!.ThrowNext = true;
        run.RunToEnd();

        Assert.True(run.CallbackReceiver.Thrown);
        run.AssertOnlyVictimFailed(Victim, serverSawInjected: false);
        Assert.Equal(1, run.Net.Client.ContainedExceptions);
        Assert.Equal(TcpState.Closed, run.Clients[Victim].GetInfo().State);
    }

    /// <summary>
    /// The link fails a transmit while a connection fills the batch (a full batch is flushed in the middle of its
    /// output): that connection, which was being served, is aborted; the frames of the batch are lost as on a wire.
    /// </summary>
    [Fact]
    public void A_link_that_fails_a_transmit_in_a_connections_output_aborts_that_connection_only()
    {
        FaultingLink? link = null;
        using var run = new TransferRun(wrapServerLink: inner => link = new FaultingLink(inner));
        run.RunUntilUnderway();
        link!.FailNextTransmit = batch => batch.Count == batch.Capacity;
        run.RunToEnd();

        Assert.True(link.Failed);
        var failed = run.FailedTransfers();
        Assert.Single(failed);
        run.AssertOthersComplete(failed[0]);
        Assert.Equal(1, run.Net.Server.ContainedExceptions);
    }

    /// <summary>The end-of-turn flush fails: no connection was being served, the batch is lost, TCP repairs it; all complete.</summary>
    [Fact]
    public void A_link_that_fails_the_end_of_turn_transmit_loses_the_batch_and_every_transfer_completes()
    {
        FaultingLink? link = null;
        using var run = new TransferRun(wrapServerLink: inner => link = new FaultingLink(inner));
        run.RunUntilUnderway();
        link!.FailNextTransmit = batch => batch.Count < batch.Capacity;
        run.RunToEnd();

        Assert.True(link.Failed);
        Assert.Empty(run.FailedTransfers());
        run.AssertContained(run.Net.Server, "link_transmit");
    }

    [Fact]
    public void A_link_that_fails_to_receive_is_contained_and_every_transfer_completes()
    {
        FaultingLink? link = null;
        using var run = new TransferRun(wrapServerLink: inner => link = new FaultingLink(inner));
        run.RunUntilUnderway();
        link!.FailNextReceive = true;
        run.RunToEnd();

        Assert.False(link.FailNextReceive);
        Assert.Empty(run.FailedTransfers());
        run.AssertContained(run.Net.Server, "link_receive");
    }

    [Fact]
    public void Log_rate_limiter_lets_one_line_through_per_interval_and_counts_the_rest()
    {
        var limiter = new LogRateLimiter(TimeSpan.FromSeconds(1));
        Assert.True(limiter.TryAcquire(0, out var suppressed));
        Assert.Equal(0, suppressed);
        for (var i = 1; i <= 5; i++)
        {
            Assert.False(limiter.TryAcquire(i * 1_000, out _));
        }

        Assert.Equal(5, limiter.Suppressed);
        Assert.True(limiter.TryAcquire(1_000_000, out suppressed));
        Assert.Equal(5, suppressed);
        Assert.Equal(0, limiter.Suppressed);
    }

    /// <summary>100 server-to-client transfers at once between two stacks in virtual time.</summary>
    private sealed class TransferRun : IDisposable
    {
        private readonly List<string> _entries = [];
        private readonly MeterListener _meters = new();
        private readonly StrongBox<long>[] _progress = new StrongBox<long>[Transfers];
        private readonly byte[][] _data = new byte[Transfers][];
        private readonly Task[] _sends = new Task[Transfers];
        private readonly Task<(long Length, byte[] Hash)>?[] _receives = new Task<(long, byte[])>?[Transfers];

        public TransferRun(Action<TcpSettings>? configureServer = null, Func<ILink, ILink>? wrapServerLink = null, int callbackReceiver = -1)
        {
            _meters.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Name == "vso.engine.contained_exceptions")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _meters.SetMeasurementEventCallback<long>((_, _, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "vso.engine.entry")
                    {
                        lock (_entries)
                        {
                            _entries.Add((string)tag.Value!);
                        }
                    }
                }
            });
            _meters.Start();

            Net = new SimulatedNetwork(configureServer: configureServer ?? (_ => { }), wrapServerLink: wrapServerLink);
            using var listener = Net.Server.Listen(80, backlog: Transfers);
            Clients = new VsoConnection[Transfers];
            Servers = new VsoConnection[Transfers];
            for (var i = 0; i < Transfers; i++)
            {
                (Clients[i], Servers[i]) = Net.Connect(listener);
            }

            for (var i = 0; i < Transfers; i++)
            {
                _data[i] = SimulatedNetwork.Pattern(TransferBytes, 1000 + i);
                _progress[i] = new StrongBox<long>();
                _sends[i] = SimulatedNetwork.SendAllAsync(Servers[i], _data[i], 16 * 1024);
                if (i == callbackReceiver)
                {
                    CallbackReceiver = new CallbackReceiver(Clients[i], _progress[i]);
                    CallbackReceiver.Start();
                }
                else
                {
                    _receives[i] = SimulatedNetwork.ReceiveAllAsync(Clients[i], _progress[i]);
                }
            }
        }

        public SimulatedNetwork Net { get; }

        public VsoConnection[] Clients { get; }

        public VsoConnection[] Servers { get; }

        public CallbackReceiver? CallbackReceiver { get; }

        /// <summary>Runs until a tenth of all bytes arrived: every transfer under way, none finished.</summary>
        public void RunUntilUnderway()
        {
            Assert.True(Net.Run(() => _progress.Sum(p => p.Value) >= (long)Transfers * TransferBytes / 10));
            Assert.DoesNotContain(_progress, p => p.Value == TransferBytes);
        }

        public void RunToEnd() =>
            Assert.True(Net.Run(() => _sends.All(t => t.IsCompleted) && _receives.All(t => t is null || t.IsCompleted) && (CallbackReceiver is null || CallbackReceiver.Done || CallbackReceiver.Thrown)));

        public bool Completed(int i) =>
            _sends[i].IsCompletedSuccessfully
            && _receives[i] is { IsCompletedSuccessfully: true } receive
            && receive.Result.Length == _data[i].Length
            && receive.Result.Hash.AsSpan().SequenceEqual(SHA256.HashData(_data[i]));

        public List<int> FailedTransfers() => Enumerable.Range(0, Transfers).Where(i => !Completed(i)).ToList();

        public void AssertOthersComplete(int victim)
        {
            for (var i = 0; i < Transfers; i++)
            {
                Assert.True(i == victim || Completed(i), $"transfer {i} did not complete byte-exact");
            }

            Assert.Equal(0, Net.Server.PinnedBytes);
            Assert.Equal(0, Net.Server.LeasedBytes);
        }

        public void AssertOnlyVictimFailed(int victim, bool serverSawInjected)
        {
            Assert.Equal([victim], FailedTransfers());
            AssertOthersComplete(victim);
            Assert.Equal(TcpState.Closed, Servers[victim].GetInfo().State);
            var error = Assert.IsType<TcpConnectionException>(_sends[victim].Exception?.InnerException);
            if (serverSawInjected)
            {
                // The application sees the engine's abort, with the exception that caused it inside.
                Assert.Equal(TcpError.Aborted, error.Error);
                Assert.IsType<InjectedFaultException>(error.InnerException);
            }
        }

        public void AssertContained(VsoStack stack, string entry)
        {
            Assert.Equal(1, stack.ContainedExceptions);
            lock (_entries)
            {
                Assert.Contains(entry, _entries);
            }
        }

        public void Dispose()
        {
            Net.Dispose();
            _meters.Dispose();
        }
    }

    private sealed class InjectedFaultException(string message) : Exception(message);

    private sealed class CallbackWork(Action callback) : IEngineWork
    {
        public TcpConnection? Connection => null;

        public void Execute() => callback();
    }

    private sealed class ThrowingWork(TcpConnection connection) : IEngineWork
    {
        public TcpConnection? Connection => connection;

        public void Execute() => throw new InjectedFaultException("posted work");
    }

    /// <summary>The default recovery, whose own timer, once asked to, fires at a given time and throws.</summary>
    private sealed class TimerFaultRecovery(ILossRecovery inner) : ILossRecovery
    {
        private long _throwAt;

        public ILossRecoverySender? Sender { get; private set; }

        public bool Thrown { get; private set; }

        public string Name => inner.Name;

        public bool InRecovery => inner.InRecovery;

        public long TimerDeadline => _throwAt != 0 && (inner.TimerDeadline == 0 || _throwAt < inner.TimerDeadline) ? _throwAt : inner.TimerDeadline;

        public void ThrowAt(long microseconds) => _throwAt = microseconds;

        public void Attach(ILossRecoverySender sender)
        {
            Sender = sender;
            inner.Attach(sender);
        }

        public void OnAck(in AckEvent ack) => inner.OnAck(ack);

        public void OnRetransmissionTimeout() => inner.OnRetransmissionTimeout();

        public void RepairLosses() => inner.RepairLosses();

        public long SendQuota => inner.SendQuota;

        public void OnTransmitted(uint sequence, int length, bool isRetransmission) => inner.OnTransmitted(sequence, length, isRetransmission);

        public void OnTimer(long nowMicroseconds)
        {
            if (_throwAt != 0 && nowMicroseconds >= _throwAt)
            {
                _throwAt = 0;
                Thrown = true;
                throw new InjectedFaultException("timer");
            }

            inner.OnTimer(nowMicroseconds);
        }

        public void OnSpuriousTimeout() => inner.OnSpuriousTimeout();
    }

    /// <summary>Forwards to the connection's host and throws once: instead of giving bytes, or after passing on an ACK.</summary>
    private sealed class ThrowingHost(ISendHost inner) : ISendHost
    {
        public bool ThrowOnIdentify { get; init; }

        public bool ThrowOnAcknowledged { get; init; }

        public bool Thrown { get; private set; }

        public void CopyTo(SendDescriptor descriptor, int offset, Span<byte> destination)
        {
            ThrowOnce(ThrowOnIdentify);
            inner.CopyTo(descriptor, offset, destination);
        }

        public PinLease Lease(SendDescriptor descriptor, int offset, int length)
        {
            ThrowOnce(ThrowOnIdentify);
            return inner.Lease(descriptor, offset, length);
        }

        public void Acknowledged(SendDescriptor descriptor)
        {
            // The host completes the send, then fails (as an application continuation run inline by that completion would).
            inner.Acknowledged(descriptor);
            ThrowOnce(ThrowOnAcknowledged);
        }

        public void Failed(SendDescriptor descriptor, Exception error) => inner.Failed(descriptor, error);

        private void ThrowOnce(bool armed)
        {
            if (armed && !Thrown)
            {
                Thrown = true;
                throw new InjectedFaultException("send host");
            }
        }
    }

    /// <summary>Passes frames through; fails one transmit (chosen by a predicate on the batch) or one receive when told.</summary>
    private sealed class FaultingLink(ILink inner) : ILink
    {
        public Func<TransmitBatch, bool>? FailNextTransmit { get; set; }

        public bool FailNextReceive { get; set; }

        public bool Failed { get; private set; }

        public MacAddress HardwareAddress => inner.HardwareAddress;

        public int Mtu => inner.Mtu;

        public long NextEventMicroseconds => inner.NextEventMicroseconds;

        public int Receive(IFrameReceiver receiver, int maxFrames)
        {
            if (FailNextReceive)
            {
                FailNextReceive = false;
                throw new InjectedFaultException("link receive");
            }

            return inner.Receive(receiver, maxFrames);
        }

        public void Transmit(TransmitBatch batch)
        {
            if (FailNextTransmit is { } fail && fail(batch))
            {
                FailNextTransmit = null;
                Failed = true;
                throw new InjectedFaultException("link transmit");
            }

            inner.Transmit(batch);
        }

        public bool WaitForFrames(TimeSpan timeout) => inner.WaitForFrames(timeout);

        public void Dispose() => inner.Dispose();
    }
}

/// <summary>
/// Receives with raw ValueTask continuations (as a pipe's callback would), which the engine runs inline; told to,
/// the next continuation throws instead of taking its result.
/// </summary>
internal sealed class CallbackReceiver(VsoConnection connection, StrongBox<long> progress)
{
    private readonly byte[] _buffer = new byte[64 * 1024];

    public bool ThrowNext { get; set; }

    public bool Thrown { get; private set; }

    public bool Done { get; private set; }

    public void Start() => ReceiveNext();

    // The ValueTask is consumed once: by Take, after it completed (CA2012 cannot see through the callback).
#pragma warning disable CA2012
    private void ReceiveNext()
    {
        while (true)
        {
            var receive = connection.ReceiveAsync(_buffer);
            if (!receive.IsCompleted)
            {
                receive.GetAwaiter().OnCompleted(() =>
                {
                    if (ThrowNext)
                    {
                        ThrowNext = false;
                        Thrown = true;
                        throw new InvalidOperationException("An application continuation failed (injected).");
                    }

                    if (Take(receive))
                    {
                        ReceiveNext();
                    }
                });
                return;
            }

            if (!Take(receive))
            {
                return;
            }
        }
    }

#pragma warning restore CA2012

    private bool Take(ValueTask<int> receive)
    {
        try
        {
            var n = receive.GetAwaiter().GetResult();
            progress.Value += n;
            Done = n == 0;
            return n > 0;
        }
        catch (TcpConnectionException)
        {
            Done = true;
            return false;
        }
    }
}
