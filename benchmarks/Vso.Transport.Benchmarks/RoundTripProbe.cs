using System.IO.Pipelines;
using Pipelines.Sockets.Unofficial;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Kestrel;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// Issue 12: where the server's time of one round trip goes, frame in to frame out. Kestrel on the Vso transport over a
/// simulated wire in real time (one engine thread per stack), a client sending one GET at a time on a keep-alive
/// connection. The server's link stamps the request's frame as the engine takes it and the response's frame as the engine
/// hands it to the link; the handler stamps its start. Stages: frame in → handler (engine turn, input pipe, the hop to
/// the thread pool unless ApplicationOnEngineThread, Kestrel's parsing and routing), handler → frame out (the response
/// written, flushed, handed to the engine, segmented and sent). The wire itself and the client are not in these figures
/// (the simulated wire polls each millisecond). Run: dotnet run -c Release --project benchmarks/Vso.Transport.Benchmarks -- --roundtrip [N]
/// </summary>
internal static class RoundTripProbe
{
    private const string ServerAddress = "198.18.0.2";

    public static async Task RunAsync(int iterations)
    {
        Console.WriteLine($"# round trips of GET / on one keep-alive connection, {iterations} measured after {iterations / 10} warm-up; server time in µs");
        Console.WriteLine("| reader continuations on | frame in → handler p50 / p90 / p99 | handler → frame out p50 / p90 / p99 | frame in → frame out p50 / p90 / p99 |");
        Console.WriteLine("|---|---:|---:|---:|");
        await MeasureAsync("the thread pool (default)", onEngine: false, null, iterations);
        await MeasureAsync("the engine thread (ApplicationOnEngineThread)", onEngine: true, null, iterations);

        // Pipelines.Sockets.Unofficial's dedicated workers, as issue 12 asks: adopted only if it beats the thread pool.
        using var dedicated = new DedicatedThreadPoolPipeScheduler("vso-readers", workerCount: Environment.ProcessorCount);
        await MeasureAsync("DedicatedThreadPoolPipeScheduler", onEngine: false, dedicated, iterations);
    }

    private static async Task MeasureAsync(string name, bool onEngine, PipeScheduler? readerScheduler, int iterations)
    {
        var stamps = new Stamps();
        var clock = SystemClock.Instance;
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMicroseconds(10) });
        using var client = new VsoStack(a, new VsoStackOptions { Address = Ipv4Address.Parse("198.18.0.1"), PrefixLength = 24, Tcp = new Tcp.TcpSettings { Nagle = false } }, clock);
        client.Start();
        var options = new VsoTransportOptions { Backend = VsoBackend.Tap, Interface = "sim0", Address = ServerAddress + "/24", ApplicationOnEngineThread = onEngine, ReaderScheduler = readerScheduler };
        using var factory = new VsoTransportFactory(options, () => new VsoStack(new TimingLink(b, stamps), StackFactory.ToStackOptions(options), clock), NullLoggerFactory.Instance);

        var builder = WebApplication.CreateBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IConnectionListenerFactory>(factory);
        builder.WebHost.UseUrls($"http://{ServerAddress}:8080");
        await using var app = builder.Build();
        app.MapGet("/", () =>
        {
            stamps.HandlerStart = Stopwatch.GetTimestamp();
            return Results.Text("Hello, World!", "text/plain");
        });
        await app.StartAsync();

        var connection = await client.ConnectAsync(new IPEndPoint(IPAddress.Parse(ServerAddress), 8080));
        var request = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        var buffer = new byte[4096];
        var warmUp = iterations / 10;
        var inToHandler = new List<double>(iterations);
        var handlerToOut = new List<double>(iterations);
        var inToOut = new List<double>(iterations);
        for (var i = 0; i < warmUp + iterations; i++)
        {
            stamps.Reset();
            await connection.SendAsync(request);
            var received = 0;
            while (received < 13 || Encoding.ASCII.GetString(buffer, received - 13, 13) != "Hello, World!")
            {
                var n = await connection.ReceiveAsync(buffer.AsMemory(received));
                if (n == 0)
                {
                    throw new InvalidOperationException("the server closed the connection");
                }

                received += n;
            }

            if (i >= warmUp && stamps.Complete)
            {
                inToHandler.Add(Micros(stamps.FrameIn, stamps.HandlerStart));
                handlerToOut.Add(Micros(stamps.HandlerStart, stamps.FrameOut));
                inToOut.Add(Micros(stamps.FrameIn, stamps.FrameOut));
            }
        }

        Console.WriteLine($"| {name} | {Percentiles(inToHandler)} | {Percentiles(handlerToOut)} | {Percentiles(inToOut)} |");
        await app.StopAsync();
    }

    private static double Micros(long from, long to) => (to - from) * 1_000_000.0 / Stopwatch.Frequency;

    private static string Percentiles(List<double> values)
    {
        values.Sort();
        double At(double q) => values.Count == 0 ? double.NaN : values[Math.Min(values.Count - 1, (int)(q * values.Count))];
        return $"{At(0.5):F0} / {At(0.9):F0} / {At(0.99):F0}";
    }

    private sealed class Stamps
    {
        public long FrameIn;
        public long HandlerStart;
        public long FrameOut;

        public bool Complete => FrameIn != 0 && HandlerStart != 0 && FrameOut != 0;

        public void Reset() => FrameIn = HandlerStart = FrameOut = 0;
    }

    /// <summary>The server's link: stamps the first request frame the engine takes and the first response frame it sends.</summary>
    private sealed class TimingLink(ILink inner, Stamps stamps) : ILink, IFrameReceiver
    {
        private IFrameReceiver? _receiver;

        public MacAddress HardwareAddress => inner.HardwareAddress;

        public int Mtu => inner.Mtu;

        public long NextEventMicroseconds => inner.NextEventMicroseconds;

        public int Receive(IFrameReceiver receiver, int maxFrames)
        {
            _receiver = receiver;
            return inner.Receive(this, maxFrames);
        }

        void IFrameReceiver.OnFrame(ReadOnlySpan<byte> frame)
        {
            if (stamps.FrameIn == 0 && TcpPayload(frame) > 0)
            {
                stamps.FrameIn = Stopwatch.GetTimestamp();
            }

            _receiver!.OnFrame(frame);
        }

        public void Transmit(TransmitBatch batch)
        {
            if (stamps.HandlerStart != 0 && stamps.FrameOut == 0)
            {
                for (var i = 0; i < batch.Count; i++)
                {
                    if (TcpPayload(batch.Linear(i)) > 0)
                    {
                        stamps.FrameOut = Stopwatch.GetTimestamp();
                        break;
                    }
                }
            }

            inner.Transmit(batch);
        }

        public bool WaitForFrames(TimeSpan timeout) => inner.WaitForFrames(timeout);

        public void Dispose() => inner.Dispose();

        /// <summary>TCP payload bytes of an Ethernet II/IPv4 frame from its headers (the payload may be gathered elsewhere).</summary>
        private static int TcpPayload(ReadOnlySpan<byte> frame)
        {
            if (frame.Length < 14 + 20 + 20 || frame[12] != 0x08 || frame[13] != 0x00 || frame[14 + 9] != 6)
            {
                return 0;
            }

            var ipHeader = (frame[14] & 0xF) * 4;
            var total = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
            var tcpHeader = (frame[14 + ipHeader + 12] >> 4) * 4;
            return total - ipHeader - tcpHeader;
        }
    }
}
