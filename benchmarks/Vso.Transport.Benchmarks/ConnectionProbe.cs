using System.IO.Pipelines;
using System.Net;
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
internal static class ConnectionProbe
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
        var probe = new Probe(clock, client, server, listener);

        // Warm-up: JIT tiers, pools and tables at the size the measured run needs (as many connections, so the TIME-WAIT
        // table's growth is not counted per connection); then the TIME-WAITs of the warm-up expire.
        for (var i = 0; i < Math.Max(200, connections); i++)
        {
            probe.OneConnection();
        }

        probe.PassTime(TimeSpan.FromSeconds(70));

        probe.ClientBytes = 0;
        using var sampling = new AllocationProbe.AllocationListener();
        var totalBefore = GC.GetTotalAllocatedBytes(precise: true);
        var start = clock.NowMicroseconds;
        for (var i = 0; i < connections; i++)
        {
            probe.OneConnection();
        }

        var total = GC.GetTotalAllocatedBytes(precise: true) - totalBefore;
        sampling.Dispose();
        var serverBytes = total - probe.ClientBytes;
        var virtualMs = (clock.NowMicroseconds - start) / 1000.0;

        var inTimeWait = server.ConnectionCount;
        var heapWith = GC.GetTotalMemory(forceFullCollection: true);
        probe.PassTime(TimeSpan.FromSeconds(70));
        var left = server.ConnectionCount;

        // The TIME-WAIT table's arrays stay at their peak size once emptied: give them back, so that the difference counts them.
        server.Core.Tcp.TimeWait.TrimExcess();
        var heapWithout = GC.GetTotalMemory(forceFullCollection: true);

        Console.WriteLine($"# {connections} connections (connect, GET with Connection: close, response, server FIN first, close), virtual time {virtualMs:F0} ms");
        Console.WriteLine($"server (stack + Kestrel transport) allocated per connection: {(double)serverBytes / connections:F0} B; client stack: {(double)probe.ClientBytes / connections:F0} B");
        Console.WriteLine($"server connections in TIME-WAIT: {inTimeWait}, after 70 s: {left}; live heap held per TIME-WAIT connection: {(double)(heapWith - heapWithout) / Math.Max(1, inTimeWait - left):F0} B");
        Console.WriteLine("types the runtime's allocation sampling caught (both stacks, about one event per 100 KB), bytes per connection:");
        foreach (var (type, bytes) in sampling.Types.OrderByDescending(t => t.Value).Take(30))
        {
            Console.WriteLine($"  {type} ~{(double)bytes / connections:F0} B");
        }

        listener.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    private sealed class Probe(VirtualClock clock, VsoStack client, VsoStack server, VsoConnectionListener listener)
    {
        private readonly byte[] _buffer = new byte[4096];

        public long ClientBytes;

        public void OneConnection()
        {
            var accept = listener.AcceptAsync();
            var connect = Client(() => client.ConnectAsync(Ipv4Address.Parse("198.18.0.2"), 8080));
            Drive(() => connect.IsCompleted && accept.IsCompleted);
            var connection = (VsoTransportConnection)accept.AsTask().Result!;
            var peer = connect.Result;
            Client(() => peer.SendAsync(Request));

            // Kestrel's part, played here: read the request, answer, end the connection.
            var input = connection.Transport.Input;
            ReadResult read = default;
            Drive(() => input.TryRead(out read));
            input.AdvanceTo(read.Buffer.End);
            var output = connection.Transport.Output;
            Response.CopyTo(output.GetSpan(Response.Length));
            output.Advance(Response.Length);
            var flushed = output.FlushAsync();
            if (!flushed.IsCompleted)
            {
                throw new InvalidOperationException("a 100-byte flush waited");
            }
            output.Complete();
            input.Complete();
            var disposed = connection.DisposeAsync();

            // The client reads the response and the FIN, then closes; the server goes through FIN-WAIT-2 to TIME-WAIT.
            Drive(() => Client(() => Drain(peer)));
            var closed = Client(peer.CloseAsync);
            Drive(() => closed.IsCompleted && disposed.IsCompleted);
        }

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

        private T Client<T>(Func<T> call)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            var result = call();
            ClientBytes += GC.GetAllocatedBytesForCurrentThread() - before;
            return result;
        }

        private bool Poll()
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            var progress = client.Core.Poll();
            ClientBytes += GC.GetAllocatedBytesForCurrentThread() - before;
            return progress | server.Core.Poll();
        }

        /// <summary>Polls both stacks, moving virtual time on when both are idle, until <paramref name="done"/> (real waits too: thread-pool continuations).</summary>
        private void Drive(Func<bool> done)
        {
            var waited = System.Diagnostics.Stopwatch.StartNew();
            while (!done())
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
                else if (waited.Elapsed > TimeSpan.FromSeconds(10))
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
