using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using Vso.Samples.HelloServer;
using Vso.Transport.Api;
using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// Meters are found by name process-wide: this collection runs alone, so that no other test's stack adds to the
/// counters it compares with TCP info.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessMetersCollection
{
    public const string Name = "Process-wide meters";
}

/// <summary>
/// The sample's Metrics=Prometheus setup (SampleMetrics.cs, compiled in) on Kestrel over the simulated wire: /metrics,
/// scraped through Kestrel's Sockets transport on loopback so that the scrape adds nothing to the stack's figures,
/// shows the stack's and Kestrel's instruments during a transfer, and its retransmissions and RTT agree with TCP info.
/// </summary>
[Collection(ProcessMetersCollection.Name)]
public sealed class MetricsTests(ITestOutputHelper output)
{
    private const int Size = 4 << 20;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan OneWayDelay = TimeSpan.FromMilliseconds(10);

    [Fact]
    public async Task Prometheus_scrape_during_a_transfer_shows_retransmissions_and_rtt_that_match_tcp_info()
    {
        // 1 % of what the server sends is lost (seeded): the download has retransmissions; 20 ms of round trip.
        using var pair = SimulatedPair.Create(
            wire: new SimulatedLinkOptions { PropagationDelay = OneWayDelay },
            serverFaults: new FaultOptions { Seed = 15, LossRate = 0.01 });
        var builder = WebApplication.CreateBuilder();
        builder.Services.AddSingleton<IConnectionListenerFactory>(pair.Factory);
        builder.WebHost.UseUrls($"http://{SimulatedPair.ServerAddress}:8080", "http://127.0.0.1:0");
        SampleMetrics.Add(builder.Services, MetricsExport.Prometheus);

        // Each scrape collects afresh (the exporter caches a response for 300 ms by default).
        builder.Services.Configure<PrometheusAspNetCoreOptions>(o => o.ScrapeResponseCacheDurationMilliseconds = 0);
        await using var app = builder.Build();
        SampleMetrics.Map(app, MetricsExport.Prometheus);
        IVsoTcpInfoFeature? server = null;
        app.MapGet("/bytes", (HttpContext c) =>
        {
            server = c.Features.Get<IVsoTcpInfoFeature>();
            c.Response.ContentLength = Size;
            return c.Response.Body.WriteAsync(new byte[Size]).AsTask();
        });
        await app.StartAsync();
        var metricsUrl = app.Urls.Single(u => u.StartsWith("http://127.0.0.1:", StringComparison.Ordinal)) + "/metrics";
        using var http = new HttpClient { Timeout = Timeout };

        var client = await pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080)).WaitAsync(Timeout);
        var reader = new BodyReader(client);
        await client.SendAsync(Encoding.ASCII.GetBytes("GET /bytes HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);

        // Mid-way the client stops reading: its window closes with half the body still at the server, the transfer
        // holds still, and the figures can be compared without a race.
        var paused = false;
        var received = await reader.ReadBodyAsync(Size / 4, async got =>
        {
            paused = true;
            var scrape = await MatchAsync(http, metricsUrl, server!, client);
            Assert.True(Value(scrape, "kestrel_active_connections") >= 1, "Kestrel's meter beside the stack's\n" + scrape);
            Assert.True(Value(scrape, "vso_pinning_pinned_bytes") > 0, "blocks held for the response\n" + scrape);
            Assert.True(SampleMetrics.PinnedBytes() > 0, "the sample's own reading of the meter (its shutdown line) sees them too");
            Assert.True(got < Size / 2, "more than half the body is still to come");
        }).WaitAsync(Timeout);
        Assert.True(paused);
        Assert.Equal(Size, received);
        await MatchAsync(http, metricsUrl, server!, client);
        await app.StopAsync().WaitAsync(Timeout);
    }

    /// <summary>
    /// Scrapes until the retransmission counter equals the sum of the server's and the client's TCP info (both stacks
    /// add to the one process-wide series; a last probe may be under way) and checks the RTT histogram against srtt.
    /// </summary>
    private async Task<string> MatchAsync(HttpClient http, string metricsUrl, IVsoTcpInfoFeature server, VsoConnection client)
    {
        TcpConnectionInfo serverInfo, clientInfo;
        string scrape;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            serverInfo = server.GetInfo();
            clientInfo = client.GetInfo();
            scrape = await http.GetStringAsync(metricsUrl);
            if (Value(scrape, "vso_tcp_retransmitted_segments_total") == serverInfo.RetransmittedSegments + clientInfo.RetransmittedSegments
                || DateTime.UtcNow > deadline)
            {
                break;
            }

            await Task.Delay(100);
        }

        var retransmitted = Value(scrape, "vso_tcp_retransmitted_segments_total");
        Assert.True(serverInfo.RetransmittedSegments > 0, "the lossy download retransmitted");
        Assert.True(
            retransmitted == serverInfo.RetransmittedSegments + clientInfo.RetransmittedSegments,
            $"retransmissions: scraped {retransmitted}, TCP info says {serverInfo.RetransmittedSegments} (server) + {clientInfo.RetransmittedSegments} (client)\n{scrape}");

        // Every RTT sample includes the 20 ms the wire takes both ways. The smoothed RTT is an average of the very
        // samples the histogram records (RFC 6298 §2), scraped after it, so it lies between the lowest and the highest
        // bucket holding any; real time on a shared machine spreads them, so no tighter agreement is asked.
        var srtt = serverInfo.SmoothedRtt.TotalMilliseconds;
        var roundTrip = 2 * OneWayDelay.TotalMilliseconds;
        var count = Value(scrape, "vso_tcp_rtt_milliseconds_count");
        var mean = Value(scrape, "vso_tcp_rtt_milliseconds_sum") / count;
        Assert.True(srtt >= roundTrip, $"srtt {srtt} ms");
        Assert.True(mean >= roundTrip, $"mean RTT sample {mean} ms\n{scrape}");
        Assert.Equal(0, Cumulative(scrape, "vso_tcp_rtt_milliseconds", roundTrip / 2));
        var (lowest, highest) = Occupied(scrape, "vso_tcp_rtt_milliseconds");
        Assert.True(srtt > lowest && srtt <= highest, $"srtt {srtt} ms within the samples' buckets ({lowest}, {highest}]\n{scrape}");
        output.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"retransmitted: server {serverInfo.RetransmittedSegments}, client {clientInfo.RetransmittedSegments}, scraped {retransmitted}; srtt {srtt} ms, RTT samples {count} in ({lowest}, {highest}] ms, mean {mean:F2} ms"));
        return scrape;
    }

    /// <summary>The sum of a metric's samples over its series, in Prometheus' text format; 0 when absent.</summary>
    private static double Value(string scrape, string name)
    {
        double sum = 0;
        foreach (var line in scrape.Split('\n'))
        {
            if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length == name.Length || (line[name.Length] != '{' && line[name.Length] != ' '))
            {
                continue;
            }

            var afterLabels = line[name.Length] == '{' ? line[(line.LastIndexOf('}') + 1)..] : line[name.Length..];
            sum += double.Parse(afterLabels.Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }

        return sum;
    }

    /// <summary>The lower bound of the lowest bucket holding samples and the upper bound of the highest.</summary>
    private static (double Lowest, double Highest) Occupied(string scrape, string histogram)
    {
        double below = 0, previous = 0, lowest = double.NaN, highest = double.NaN;
        foreach (var bound in Bounds(scrape, histogram))
        {
            var cumulative = Value(scrape, $"{histogram}_bucket", bound);
            if (cumulative > previous)
            {
                lowest = double.IsNaN(lowest) ? below : lowest;
                highest = bound;
            }

            previous = cumulative;
            below = bound;
        }

        return (lowest, highest);
    }

    /// <summary>Samples at most <paramref name="bound"/> (the cumulative count of the largest bucket bound not above it).</summary>
    private static double Cumulative(string scrape, string histogram, double bound)
    {
        var at = 0.0;
        foreach (var b in Bounds(scrape, histogram))
        {
            if (b <= bound)
            {
                at = b;
            }
        }

        return Value(scrape, $"{histogram}_bucket", at);
    }

    private static List<double> Bounds(string scrape, string histogram)
    {
        var bounds = new List<double>();
        foreach (var line in scrape.Split('\n'))
        {
            var le = line.IndexOf("le=\"", StringComparison.Ordinal);
            if (line.StartsWith(histogram + "_bucket{", StringComparison.Ordinal) && le > 0)
            {
                var text = line[(le + 4)..line.IndexOf('"', le + 4)];
                bounds.Add(text == "+Inf" ? double.PositiveInfinity : double.Parse(text, CultureInfo.InvariantCulture));
            }
        }

        bounds.Sort();
        return bounds;
    }

    /// <summary>A histogram bucket's cumulative count.</summary>
    private static double Value(string scrape, string bucket, double le)
    {
        var label = "le=\"" + (double.IsPositiveInfinity(le) ? "+Inf" : le.ToString(CultureInfo.InvariantCulture)) + "\"";
        foreach (var line in scrape.Split('\n'))
        {
            if (line.StartsWith(bucket + "{", StringComparison.Ordinal) && line.Contains(label, StringComparison.Ordinal))
            {
                return double.Parse(line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"No {bucket} with {label}.");
    }

    /// <summary>Reads a Content-Length response from a VsoConnection.</summary>
    private sealed class BodyReader(VsoConnection connection)
    {
        private readonly byte[] _chunk = new byte[64 * 1024];
        private readonly List<byte> _pending = [];

        /// <summary>Reads the body, calling <paramref name="pause"/> once, without reading, after <paramref name="pauseAt"/> bytes.</summary>
        public async Task<long> ReadBodyAsync(long pauseAt, Func<long, Task> pause)
        {
            var length = await ReadHeadAsync();
            long got = Math.Min(length, _pending.Count);
            _pending.RemoveRange(0, (int)got);
            var paused = false;
            while (got < length)
            {
                var n = await connection.ReceiveAsync(_chunk);
                if (n == 0)
                {
                    break;
                }

                var body = (int)Math.Min(n, length - got);
                got += body;
                _pending.AddRange(_chunk.AsSpan(body, n - body).ToArray());
                if (!paused && got >= pauseAt)
                {
                    paused = true;
                    await pause(got);
                }
            }

            return got;
        }

        private async Task<long> ReadHeadAsync()
        {
            int end;
            while ((end = Encoding.ASCII.GetString(_pending.ToArray()).IndexOf("\r\n\r\n", StringComparison.Ordinal)) < 0)
            {
                await FillAsync();
            }

            var head = Encoding.ASCII.GetString(_pending.GetRange(0, end).ToArray());
            _pending.RemoveRange(0, end + 4);
            Assert.StartsWith("HTTP/1.1 200", head, StringComparison.Ordinal);
            var line = head.Split("\r\n").Single(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            return long.Parse(line["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture);
        }

        private async Task FillAsync()
        {
            var n = await connection.ReceiveAsync(_chunk);
            if (n == 0)
            {
                throw new EndOfStreamException();
            }

            _pending.AddRange(_chunk.AsSpan(0, n).ToArray());
        }
    }
}
