using System.Security.Cryptography;
using Vso.Transport.Tests.Interop;
using Xunit.Abstractions;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// One server, two transports: the HelloServer sample with <c>UseVsoTransport()</c> and two URLs, the stack's
/// 198.18.0.2:8080 (AF_PACKET on a veth end without a kernel address) and a kernel address 198.18.1.2:8080 on a second
/// veth pair in the same server namespace. The transport factory's selector (IConnectionListenerFactorySelector) takes
/// the first and leaves the second to Kestrel's Sockets transport. The kernel client in the other namespace downloads
/// from both (SHA-256), and <c>/tcpinfo</c> tells which transport served each.
/// </summary>
public sealed class MixedServerInteropTests(ITestOutputHelper output)
{
    private const string VsoBase = "http://198.18.0.2:8080";
    private const string SocketsBase = "http://198.18.1.2:8080";

    [RootFact]
    public void One_server_listens_on_the_stack_and_on_a_kernel_address()
    {
        var namespaces = new List<string>();
        var temp = Directory.CreateTempSubdirectory("vso-kestrel-mixed-");
        using (var net = new NetnsHarness(RealLinkKind.AfPacket))
        {
            namespaces.Add(net.Client);
            namespaces.Add(net.Server);

            // The kernel's own pair, inside the harness's namespaces (deleted with them).
            Shell.Check("ip", "-n", net.Client, "link", "add", "vsoc1", "type", "veth", "peer", "name", "vsos1", "netns", net.Server);
            Shell.Check("ip", "-n", net.Client, "addr", "add", "198.18.1.1/24", "dev", "vsoc1");
            Shell.Check("ip", "-n", net.Server, "addr", "add", "198.18.1.2/24", "dev", "vsos1");
            Shell.Check("ip", "-n", net.Client, "link", "set", "vsoc1", "up");
            Shell.Check("ip", "-n", net.Server, "link", "set", "vsos1", "up");

            var environment = new Dictionary<string, string>
            {
                ["Transport"] = "Vso",
                ["Vso__Backend"] = "AfPacket",
                ["Vso__Interface"] = net.StackDevice,
                ["Vso__Address"] = "198.18.0.2/24",
                ["Logging__LogLevel__Default"] = "Warning",
            };
            using var sample = SampleServer.Start(net.Server, environment, "--urls", VsoBase + ";" + SocketsBase);
            try
            {
                // Start returns at the first "try: curl" line; the second endpoint's follows in the same callback.
                var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
                while (!sample.Output.Contains("listening on " + SocketsBase, StringComparison.Ordinal) && DateTime.UtcNow < deadline)
                {
                    Thread.Sleep(20);
                }

                Assert.Contains("listening on " + VsoBase, sample.Output, StringComparison.Ordinal);
                Assert.Contains("listening on " + SocketsBase, sample.Output, StringComparison.Ordinal);

                var want = Convert.ToHexString(SHA256.HashData(Pattern(16 << 20)));
                foreach (var (url, transport) in new[] { (VsoBase, "Vso"), (SocketsBase, "Sockets"), (VsoBase, "Vso") })
                {
                    var info = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(20), "curl", "-sS", "-m", "10", url + "/tcpinfo");
                    Assert.True(info.ExitCode == 0, $"curl {url}/tcpinfo: {info}");
                    Assert.Contains($"\"transport\":\"{transport}\"", info.Output, StringComparison.Ordinal);

                    var file = Path.Combine(temp.FullName, transport);
                    var download = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(120), "curl", "-sS", "-f", "-m", "100", "-o", file, url + "/bytes/16777216");
                    Assert.True(download.ExitCode == 0, $"curl {url}/bytes/16777216: {download}");
                    Assert.Equal(want, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file))));
                    output.WriteLine($"{url}: {transport}, 16 MiB, SHA-256 {want[..16]}…");
                }

                // Both at once, on keep-alive connections: each endpoint keeps its transport.
                var both = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(20), "curl", "-sS", "-m", "10", VsoBase + "/", SocketsBase + "/", VsoBase + "/");
                Assert.Equal("Hello, World!Hello, World!Hello, World!", both.Output.Trim());

                Assert.Equal(0, sample.Stop(TimeSpan.FromSeconds(30)));
                Assert.Contains("HelloServer stopped; pinned bytes: 0", sample.Output, StringComparison.Ordinal);
                Assert.DoesNotContain("Unhandled exception", sample.Error, StringComparison.Ordinal);
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

    private static byte[] Pattern(int length)
    {
        var data = new byte[length];
        for (var i = 0; i < length; i++)
        {
            data[i] = (byte)(i % 251);
        }

        return data;
    }
}
