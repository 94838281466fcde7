using System.Globalization;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Vso.Transport.Tests.Interop;
using Xunit.Abstractions;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// The HelloServer sample on the Vso transport inside network namespaces (DESIGN.md §4), driven by the kernel's
/// clients: curl (HTTP/1.1 keep-alive, chunked upload, 64 MiB download, 16 MiB upload echoed, HTTPS), h2load (h2c with
/// prior knowledge), wrk (10 s, no socket error, no non-2xx), then a graceful stop while wrk runs. Nothing is left
/// behind: no namespace, no process, no pinned byte.
/// </summary>
public sealed partial class SampleInteropTests(ITestOutputHelper output)
{
    private const string Base = "http://198.18.0.2:8080";

    [RootFact]
    public void Sample_on_AfPacket_serves_curl_h2load_https_wrk_and_stops_gracefully() => Run(RealLinkKind.AfPacket);

    [RootFact]
    public void Sample_on_AfXdp_serves_curl_h2load_https_wrk_and_stops_gracefully() => Run(RealLinkKind.AfXdp);

    /// <summary>Vso:Engines = 2 on AfXdp: one AF_XDP socket per engine, on the two queues of the veth.</summary>
    [RootFact]
    public void Sample_on_AfXdp_with_two_engines_serves_curl_h2load_https_wrk_and_stops_gracefully() => Run(RealLinkKind.AfXdp, engines: 2);

    [RootFact]
    public void Sample_on_an_existing_Tap_serves_curl_h2load_https_wrk_and_stops_gracefully() => Run(RealLinkKind.Tap);

    /// <summary><c>Vso:Engines = 2</c> on a persistent multi-queue TAP device: one queue per engine, the flows steered to them.</summary>
    [RootFact]
    public void Sample_with_two_engines_on_an_existing_multi_queue_Tap_serves_curl_h2load_https_wrk_and_stops_gracefully() => Run(RealLinkKind.Tap, engines: 2);

    private void Run(RealLinkKind kind, int engines = 1)
    {
        string client;
        string server;
        var namespaces = new List<string>();
        var temp = Directory.CreateTempSubdirectory("vso-kestrel-");
        using (var net = new NetnsHarness(kind, queues: engines))
        {
            client = net.Client;
            server = net.Server;
            namespaces.Add(client);
            namespaces.Add(server);
            var environment = new Dictionary<string, string>
            {
                ["Transport"] = "Vso",
                ["Vso__Address"] = "198.18.0.2/24",
                ["HttpsUrl"] = "https://198.18.0.2:8443",
                ["H2cUrl"] = "http://198.18.0.2:8081",
                ["Logging__LogLevel__Default"] = "Warning",
            };
            if (kind is RealLinkKind.AfPacket or RealLinkKind.AfXdp)
            {
                environment["Vso__Backend"] = kind.ToString();
                environment["Vso__Interface"] = net.StackDevice;
                environment["Logging__LogLevel__Vso.Transport.Links"] = "Information";
                environment["Vso__Engines"] = engines.ToString(CultureInfo.InvariantCulture);
            }
            else
            {
                // An existing, persistent TAP device with the kernel side already addressed (with a queue per engine).
                NetnsHarness.CheckIn(net.Client, "ip", ["tuntap", "add", "dev", net.StackDevice, "mode", "tap", .. (engines > 1 ? (string[])["multi_queue"] : [])]);
                NetnsHarness.CheckIn(net.Client, "ip", "addr", "add", "198.18.0.1/24", "dev", net.StackDevice);
                NetnsHarness.CheckIn(net.Client, "ip", "link", "set", net.StackDevice, "up");
                net.PrepareTapDevice();
                environment["Vso__Backend"] = "Tap";
                environment["Vso__Interface"] = net.StackDevice;
                environment["Vso__Tap__Create"] = "false";
                environment["Vso__Tap__HostAddress"] = "";
                environment["Vso__Engines"] = engines.ToString(CultureInfo.InvariantCulture);
                environment["Logging__LogLevel__Vso.Transport.Links"] = "Information";
            }

            using var sample = SampleServer.Start(server, environment, "--urls", Base);
            try
            {
                Exercise(net, temp.FullName, sample);
                if (engines > 1 && kind == RealLinkKind.Tap)
                {
                    // Each engine opened its own queue, and queue 0 attached the steering program.
                    Assert.Contains($"queue 0 of {engines}, flows steered to the engines' queues", sample.Output, StringComparison.Ordinal);
                    Assert.Contains($"queue {engines - 1} of {engines}", sample.Output, StringComparison.Ordinal);
                }
            }
            finally
            {
                output.WriteLine("--- sample stdout\n" + sample.Output + "\n--- sample stderr\n" + sample.Error);
            }
        }

        temp.Delete(recursive: true);
        var left = Shell.Run(TimeSpan.FromSeconds(10), "ip", "netns", "list").Output;
        foreach (var ns in namespaces)
        {
            Assert.DoesNotContain(ns, left, StringComparison.Ordinal);
        }
    }

    private void Exercise(NetnsHarness net, string temp, SampleServer sample)
    {
        var ns = net.Client;

        if (net.Kind == RealLinkKind.AfXdp)
        {
            // The sample logged the link it opened: the stack's own XDP program and an AF_XDP socket in copy mode (veth).
            Assert.Contains("AF_XDP link open on", sample.Output, StringComparison.Ordinal);

            // Pinned identify mode: the UMEM covers the transport's block pool, so Kestrel's response bytes leave in place.
            Assert.Contains("UMEM 67108864 B over the pinned block pool", sample.Output, StringComparison.Ordinal);
            Assert.Contains("payload sent in place from the pool", sample.Output, StringComparison.Ordinal);

            // One socket per engine: engine k on queue k.
            Assert.Contains("queue 0,", sample.Output, StringComparison.Ordinal);
            Assert.Equal(net.Queues > 1, sample.Output.Contains("queue 1,", StringComparison.Ordinal));
        }

        // HTTP/1.1 keep-alive: two requests, one connection.
        var keepAlive = NetnsHarness.Exec(ns, TimeSpan.FromSeconds(20), "curl", "-sv", "-m", "10", Base + "/", Base + "/");
        Assert.Equal(0, keepAlive.ExitCode);
        Assert.Equal("Hello, World!Hello, World!", keepAlive.Output.Trim());
        Assert.Contains("Re-using existing connection", keepAlive.Error, StringComparison.Ordinal);
        Assert.Contains("Content-Type: text/plain", keepAlive.Error, StringComparison.OrdinalIgnoreCase);

        // 64 MiB download: byte i = i % 251. Then the same connection's TCP info: on AF_PACKET and TAP the sender handed
        // the link super-segments (segmentation offload), which the kernel cut (AF_PACKET) or took whole (TAP).
        var download = Path.Combine(temp, "download");
        var afterDownload = Path.Combine(temp, "tcpinfo");
        Curl(ns, "-o", download, Base + "/bytes/67108864", "-o", afterDownload, Base + "/tcpinfo");
        Assert.Equal(Convert.ToHexString(SHA256.HashData(Pattern(64 << 20))), Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(download))));
        var superSegments = long.Parse(SuperSegments().Match(File.ReadAllText(afterDownload)).Groups[1].Value, CultureInfo.InvariantCulture);
        output.WriteLine($"super-segments for 64 MiB: {superSegments}");
        if (net.Kind is RealLinkKind.AfPacket or RealLinkKind.Tap)
        {
            Assert.True(superSegments > 100, $"only {superSegments} super-segments for 64 MiB");
        }
        else
        {
            Assert.Equal(0, superSegments);
        }

        // 16 MiB upload echoed, with Content-Length and chunked.
        var upload = Path.Combine(temp, "upload");
        File.WriteAllBytes(upload, RandomNumberGenerator.GetBytes(16 << 20));
        var want = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(upload)));
        var echoed = Path.Combine(temp, "echoed");
        Curl(ns, "--data-binary", "@" + upload, "-H", "Content-Type: application/octet-stream", "-o", echoed, Base + "/echo");
        Assert.Equal(want, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(echoed))));
        Curl(ns, "-T", upload, "-X", "POST", "-H", "Transfer-Encoding: chunked", "-o", echoed, Base + "/echo");
        Assert.Equal(want, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(echoed))));

        // TCP info as JSON.
        var info = NetnsHarness.Exec(ns, TimeSpan.FromSeconds(20), "curl", "-s", "-m", "10", Base + "/tcpinfo");
        Assert.Contains("\"state\":\"Established\"", info.Output, StringComparison.Ordinal);
        Assert.Contains("\"cwnd\":", info.Output, StringComparison.Ordinal);

        // HTTPS through Kestrel with the sample's self-signed certificate, and an 8 MiB body over TLS.
        var https = NetnsHarness.Exec(ns, TimeSpan.FromSeconds(20), "curl", "-sk", "-m", "10", "https://198.18.0.2:8443/");
        Assert.Equal("Hello, World!", https.Output.Trim());
        Curl(ns, "-k", "-o", download, "https://198.18.0.2:8443/bytes/8388608");
        Assert.Equal(Convert.ToHexString(SHA256.HashData(Pattern(8 << 20))), Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(download))));

        // HTTP/2 cleartext with prior knowledge.
        var h2 = NetnsHarness.Exec(ns, TimeSpan.FromSeconds(60), "h2load", "-n", "20000", "-c", "16", "-m", "10", "http://198.18.0.2:8081/");
        output.WriteLine(h2.Output);
        Assert.Contains("20000 succeeded, 0 failed, 0 errored", h2.Output, StringComparison.Ordinal);
        Assert.Contains("status codes: 20000 2xx", h2.Output, StringComparison.Ordinal);

        // wrk for 10 s: no socket error, no non-2xx answer.
        var wrk = NetnsHarness.Exec(ns, TimeSpan.FromSeconds(40), "wrk", "-t2", "-c64", "-d10s", Base + "/");
        output.WriteLine(wrk.Output);
        Assert.Equal(0, wrk.ExitCode);
        Assert.DoesNotContain("Socket errors", wrk.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Non-2xx", wrk.Output, StringComparison.Ordinal);
        var rps = double.Parse(RequestsPerSecond().Match(wrk.Output).Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.True(rps > 1000, $"only {rps} requests/s");

        // Graceful shutdown while wrk runs: the process exits 0 and reports every pinned byte back.
        var load = NetnsHarness.ExecAsync(ns, TimeSpan.FromSeconds(40), "wrk", "-t2", "-c64", "-d6s", Base + "/");
        Thread.Sleep(2000);
        var exit = sample.Stop(TimeSpan.FromSeconds(30));
        Assert.Equal(0, exit);
        Assert.Contains("HelloServer stopped; pinned bytes: 0", sample.Output, StringComparison.Ordinal);
        _ = load.Result;
        Assert.DoesNotContain("Unhandled exception", sample.Error, StringComparison.Ordinal);
    }

    private static void Curl(string ns, params string[] arguments)
    {
        var result = NetnsHarness.Exec(ns, TimeSpan.FromSeconds(120), "curl", ["-sS", "-f", "-m", "100", .. arguments]);
        Assert.True(result.ExitCode == 0, $"curl {string.Join(' ', arguments)}: {result}");
    }

    private static byte[] Pattern(int length)
    {
        var data = new byte[length];
        for (var i = 0; i < length; i++)
        {
            data[i] = (byte)(i % 251);
        }

        return data;
    }

    [GeneratedRegex(@"Requests/sec:\s+([0-9.]+)")]
    private static partial Regex RequestsPerSecond();

    [GeneratedRegex(@"""offloadedSuperSegments"":([0-9]+)")]
    private static partial Regex SuperSegments();
}
