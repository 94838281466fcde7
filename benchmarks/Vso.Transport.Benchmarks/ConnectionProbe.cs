using System.IO.Pipelines;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Kestrel;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// Issue 12 item 4, `--connections [N]`: what one new connection costs the server. The Kestrel transport's listener on a
/// stack in virtual time, a client stack on the other end of a simulated wire, both polled on this thread; per connection
/// the client connects, sends one request with Connection: close, reads the response and the server's FIN, and closes; the
/// server side plays Kestrel (accept, read the request, write and flush a response, dispose), so Kestrel's own objects are
/// not in the figure. Bytes allocated by the server (stack and transport) per connection are the process's allocated bytes
/// less the client's, which are counted on this thread around every client call and poll. Then the memory the server
/// holds per connection in TIME-WAIT: the live heap with N connections in TIME-WAIT against the heap once they expired.
/// </summary>
internal static partial class ConnectionProbe
{
    private static readonly byte[] Request = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    private static readonly byte[] Response = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nHello, World!");

    public static void Run(int connections)
    {
        SynchronizationContext.SetSynchronizationContext(null);
        var clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMicroseconds(10) });
        var options = new VsoTransportOptions { Backend = VsoBackend.Tap, Interface = "sim0", Address = "198.18.0.2/24" };
        using var client = new VsoStack(a, new VsoStackOptions { Address = Ipv4Address.Parse("198.18.0.1"), PrefixLength = 24, Tcp = new Tcp.TcpSettings { Nagle = false } }, clock);
        using var server = new VsoStack(b, StackFactory.ToStackOptions(options), clock);
        client.StartVirtual();
        server.StartVirtual();
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { BlockSize = options.Pinning.BlockSize, SlabSize = 256 * 1024 });
        using var blocks = new PinnedBlockClasses(pool);
        using var metrics = new VsoTransportMetrics();
        var listener = new VsoConnectionListener(server, blocks, options, new IPEndPoint(IPAddress.Parse("198.18.0.2"), 8080), NullLogger.Instance, static _ => { }, metrics, proxy: null);
        listener.Bind();
        using var probe = new Probe(clock, client, server, listener);

        // Warm-up: JIT tiers, pools and tables at the size the measured run needs (as many connections, so the TIME-WAIT
        // table's growth is not counted per connection); then the TIME-WAITs of the warm-up expire.
        for (var i = 0; i < Math.Max(200, connections); i++)
        {
            probe.OneConnection();
        }

        probe.PassTime(TimeSpan.FromSeconds(70));

        using var sampling = new AllocationProbe.AllocationListener();
        var clientBefore = probe.ClientAllocated;
        Array.Clear(probe.Phases);
        var totalBefore = GC.GetTotalAllocatedBytes(precise: true);
        var start = clock.NowMicroseconds;
        for (var i = 0; i < connections; i++)
        {
            probe.OneConnection();
        }

        var total = GC.GetTotalAllocatedBytes(precise: true) - totalBefore;
        var clientBytes = probe.ClientAllocated - clientBefore;
        sampling.Dispose();
        var serverBytes = total - clientBytes;
        var virtualMs = (clock.NowMicroseconds - start) / 1000.0;

        var inTimeWait = server.ConnectionCount;
        var heapWith = GC.GetTotalMemory(forceFullCollection: true);
        probe.PassTime(TimeSpan.FromSeconds(70));
        var left = server.ConnectionCount;

        // The TIME-WAIT table's arrays stay at their peak size once emptied: give them back, so that the difference counts them.
        server.Core.Tcp.TimeWait.TrimExcess();
        var heapWithout = GC.GetTotalMemory(forceFullCollection: true);

        Console.WriteLine($"# {connections} connections (connect, GET with Connection: close, response, server FIN first, close), virtual time {virtualMs:F0} ms");
        Console.WriteLine($"server (stack + Kestrel transport) allocated per connection: {(double)serverBytes / connections:F0} B; client stack: {(double)clientBytes / connections:F0} B");
        Console.WriteLine($"server connections in TIME-WAIT: {inTimeWait}, after 70 s: {left}; live heap held per TIME-WAIT connection: {(double)(heapWith - heapWithout) / Math.Max(1, inTimeWait - left):F0} B");
        var onThread = probe.Phases.Sum();
        Console.WriteLine($"server bytes per connection by phase, on the probe's thread: accept (SYN to accepted, request sent) {(double)probe.Phases[0] / connections:F0} B, request read {(double)probe.Phases[1] / connections:F0} B, response and dispose {(double)probe.Phases[2] / connections:F0} B, close (FIN exchange to disposed) {(double)probe.Phases[3] / connections:F0} B; other threads (thread pool) {(double)(serverBytes - onThread) / connections:F0} B");
        var layer = server.Core.Tcp;
        var id = new Tcp.ConnectionId(Ipv4Address.Parse("198.18.0.2"), 8080, Ipv4Address.Parse("198.18.0.1"), 1);
        Console.WriteLine($"sizes: a TcpConnection with everything it builds {Measure(static l => new Tcp.TcpConnection(l, new Tcp.ConnectionId(default, 1, default, 2), observer: null), layer)} B, of which its TcpSettings copy {Measure(static l => l.Settings.Clone(), layer)} B; loss recovery chosen at the handshake (SACK, before it attaches) {Measure(static l => l.Settings.LossRecovery(true), layer)} B; congestion control {Measure(static l => l.Settings.CongestionControl(), layer)} B; the two IPEndPoints of a connection {Measure(static l => new[] { new IPEndPoint(l.Ip.Address.ToIPAddress(), 8080), new IPEndPoint(l.Ip.Address.ToIPAddress(), 1) }, layer) - 40} B");
        GC.KeepAlive(id);
        Console.WriteLine("types the runtime's allocation sampling caught on the server's threads (about one event per 100 KB), bytes per connection:");
        foreach (var (type, bytes) in sampling.TypesOutside(probe.ClientOsThreadId).OrderByDescending(t => t.Value).Take(40))
        {
            Console.WriteLine($"  {type} ~{(double)bytes / connections:F0} B");
        }

        listener.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>Bytes <paramref name="build"/> allocates (a static lambda: nothing else on this thread meanwhile).</summary>
    private static long Measure(Func<Tcp.TcpLayer, object> build, Tcp.TcpLayer layer)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var built = build(layer);
        var bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        GC.KeepAlive(built);
        return bytes;
    }

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();

    /// <summary>The client's side: every client call and poll runs on this thread while the probe's thread waits.</summary>
    private sealed class ClientThread : IDisposable
    {
        private readonly SemaphoreSlim _go = new(0);
        private readonly SemaphoreSlim _done = new(0);
        private readonly Thread _thread;
        private Action<Probe>? _work;
        private Probe? _probe;
        private bool _stop;

        public ClientThread()
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = "probe client" };
            _thread.Start();
            _done.Wait();
        }

        public long OsThreadId { get; private set; }

        public long Allocated { get; private set; }

        public void Run(Action<Probe> work, Probe probe)
        {
            _work = work;
            _probe = probe;
            _go.Release();
            _done.Wait();
        }

        public void Dispose()
        {
            _stop = true;
            _go.Release();
            _thread.Join();
            _go.Dispose();
            _done.Dispose();
        }

        private void Loop()
        {
            OsThreadId = GetTid();
            _done.Release();
            while (true)
            {
                _go.Wait();
                if (_stop)
                {
                    return;
                }

                _work!(_probe!);
                Allocated = GC.GetAllocatedBytesForCurrentThread();
                _done.Release();
            }
        }
    }

    private sealed class Probe(VirtualClock clock, VsoStack client, VsoStack server, VsoConnectionListener listener) : IDisposable
    {
        private readonly byte[] _buffer = new byte[4096];
        private readonly ClientThread _client = new();

        // One connection's state, in fields so that the steps are static lambdas (no closure per connection).
        private ValueTask<Microsoft.AspNetCore.Connections.ConnectionContext?> _accept;
        private Task<VsoConnection>? _connect;
        private VsoConnection? _peer;
        private VsoTransportConnection? _connection;
        private ReadResult _read;
        private ValueTask _disposed;
        private Task? _closed;
        private bool _clientProgress;
        private bool _drained;

        private VsoStack Client => client;

        public long ClientAllocated => _client.Allocated;

        /// <summary>Bytes the server allocated on this thread, by phase of the connection (accept, request, response, close).</summary>
        public long[] Phases { get; } = new long[4];

        private long _phaseStart;

        private void EndPhase(int phase)
        {
            var now = GC.GetAllocatedBytesForCurrentThread();
            Phases[phase] += now - _phaseStart;
            _phaseStart = now;
        }

        public long ClientOsThreadId => _client.OsThreadId;

        public void Dispose() => _client.Dispose();

        // The ValueTasks are kept in fields and consumed once, after completion (CA2012 asks for an await).
#pragma warning disable CA2012
        public void OneConnection()
        {
            _phaseStart = GC.GetAllocatedBytesForCurrentThread();
            _accept = listener.AcceptAsync();
            _client.Run(static p => p._connect = p.Client.ConnectAsync(Ipv4Address.Parse("198.18.0.2"), 8080), this);
            Drive(static p => p._connect!.IsCompleted && p._accept.IsCompleted);
            _connection = (VsoTransportConnection)_accept.Result!;
            _client.Run(static p => p._peer = p._connect!.Result, this);
            _client.Run(static p => _ = p._peer!.SendAsync(Request), this);
            EndPhase(0);

            // Kestrel's part, played here: read the request, answer, end the connection.
            var input = _connection.Transport.Input;
            Drive(static p => p._connection!.Transport.Input.TryRead(out p._read));
            input.AdvanceTo(_read.Buffer.End);
            _read = default;
            EndPhase(1);
            var output = _connection.Transport.Output;
            Response.CopyTo(output.GetSpan(Response.Length));
            output.Advance(Response.Length);
            var flushed = output.FlushAsync();
            if (!flushed.IsCompleted)
            {
                throw new InvalidOperationException("a 100-byte flush waited");
            }

            output.Complete();
            input.Complete();
            _disposed = _connection.DisposeAsync();
            EndPhase(2);

            // The client reads the response and the FIN, then closes; the server goes through FIN-WAIT-2 to TIME-WAIT.
            Drive(static p =>
            {
                p._client.Run(static q => q._drained = q.Drain(q._peer!), p);
                return p._drained;
            });
            _client.Run(static p => p._closed = p._peer!.CloseAsync(), this);
            Drive(static p => p._closed!.IsCompleted && p._disposed.IsCompleted);
            EndPhase(3);
            _connection = null;
            _peer = null;
            _connect = null;
            _closed = null;
            _accept = default;
            _disposed = default;
        }
#pragma warning restore CA2012

        public void PassTime(TimeSpan duration)
        {
            var end = clock.NowMicroseconds + (duration.Ticks / 10);
            while (clock.NowMicroseconds < end)
            {
                Poll();
                var next = Math.Min(Math.Min(client.Core.NextEventMicroseconds, server.Core.NextEventMicroseconds), end);
                clock.AdvanceTo(Math.Max(next, clock.NowMicroseconds + 1));
            }

            Poll();
        }

        private bool Drain(VsoConnection peer)
        {
            while (peer.TryReceive(_buffer, out var n) && n > 0)
            {
            }

            return peer.IsEndOfStream;
        }

        private bool Poll()
        {
            _client.Run(static p => p._clientProgress = p.Client.Core.Poll(), this);
            return _clientProgress | server.Core.Poll();
        }

        /// <summary>Polls both stacks, moving virtual time on when both are idle, until <paramref name="done"/> (real waits too: thread-pool continuations).</summary>
        private void Drive(Func<Probe, bool> done)
        {
            long waitedSince = 0;
            while (!done(this))
            {
                if (Poll())
                {
                    continue;
                }

                var next = Math.Min(client.Core.NextEventMicroseconds, server.Core.NextEventMicroseconds);
                if (next != long.MaxValue && next - clock.NowMicroseconds < 1_000_000)
                {
                    clock.AdvanceTo(Math.Max(next, clock.NowMicroseconds + 1));
                }
                else if (waitedSince == 0)
                {
                    waitedSince = System.Diagnostics.Stopwatch.GetTimestamp();
                }
                else if (System.Diagnostics.Stopwatch.GetElapsedTime(waitedSince) > TimeSpan.FromSeconds(10))
                {
                    throw new InvalidOperationException("the connection made no progress");
                }
                else
                {
                    Thread.Yield();
                }
            }
        }
    }
}
