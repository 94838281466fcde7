using System.Security.Cryptography;
using Vso.Transport.Tests.Interop;
using Xunit.Abstractions;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// Issue 15 item 4 with a real client: the HelloServer sample on AF_PACKET with <c>Vso:ProxyProtocol=V1</c> and
/// 198.18.0.1 as its only trusted balancer, and <c>curl --haproxy-protocol</c> in the client namespace. curl writes its
/// own socket's address (198.18.0.3) into the header; an SNAT rule in the client namespace then makes the connection
/// come from 198.18.0.1, as a balancer's would. <c>/whoami</c> must name 198.18.0.3 and curl's own port, not the
/// balancer. A curl without the header, and one from an untrusted address (198.18.0.4, no SNAT), are reset, and the
/// sample's log says why.
/// </summary>
public sealed class ProxyProtocolInteropTests(ITestOutputHelper output)
{
    private const string Base = "http://198.18.0.2:8080";

    [RootFact]
    public void Curl_with_haproxy_protocol_is_seen_as_the_client_its_header_names()
    {
        var namespaces = new List<string>();
        var temp = Directory.CreateTempSubdirectory("vso-proxy-");
        using (var net = new NetnsHarness(RealLinkKind.AfPacket))
        {
            namespaces.Add(net.Client);
            namespaces.Add(net.Server);
            NetnsHarness.CheckIn(net.Client, "ip", "addr", "add", "198.18.0.3/24", "dev", net.ClientCaptureDevice);
            NetnsHarness.CheckIn(net.Client, "ip", "addr", "add", "198.18.0.4/24", "dev", net.ClientCaptureDevice);
            NetnsHarness.CheckIn(net.Client, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "198.18.0.3", "-d", "198.18.0.2", "-p", "tcp", "-j", "SNAT", "--to-source", "198.18.0.1");

            var environment = new Dictionary<string, string>
            {
                ["Transport"] = "Vso",
                ["Vso__Backend"] = "AfPacket",
                ["Vso__Interface"] = net.StackDevice,
                ["Vso__Address"] = "198.18.0.2/24",
                ["Vso__ProxyProtocol"] = "V1",
                ["Vso__ProxyProtocolTrustedAddresses"] = "198.18.0.1",
                ["Logging__LogLevel__Default"] = "Warning",
                ["Logging__LogLevel__Vso.Transport.Kestrel"] = "Debug",
            };
            using var sample = SampleServer.Start(net.Server, environment, "--urls", Base);
            try
            {
                // Through the "balancer": the header's client, with curl's own port (the SNAT may change the TCP port).
                var whoami = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(30), "curl", "-sS", "-m", "10", "--haproxy-protocol", "--interface", "198.18.0.3",
                    "-w", " %{local_ip}:%{local_port}", Base + "/whoami");
                output.WriteLine("whoami: " + whoami);
                Assert.True(whoami.ExitCode == 0, $"curl --haproxy-protocol: {whoami}");
                var parts = whoami.Output.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
                Assert.Equal(3, parts.Length);
                Assert.StartsWith("198.18.0.3:", parts[0], StringComparison.Ordinal);
                Assert.Equal(parts[2], parts[0]);
                Assert.Equal("198.18.0.2:8080", parts[1]);

                // A body through the header's connection, SHA-256 checked.
                var file = Path.Combine(temp.FullName, "body");
                var download = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(60), "curl", "-sS", "-f", "-m", "50", "--haproxy-protocol", "--interface", "198.18.0.3",
                    "-o", file, Base + "/bytes/4194304");
                Assert.True(download.ExitCode == 0, $"curl --haproxy-protocol /bytes: {download}");
                var pattern = new byte[4 << 20];
                for (var i = 0; i < pattern.Length; i++)
                {
                    pattern[i] = (byte)(i % 251);
                }

                Assert.Equal(SHA256.HashData(pattern), SHA256.HashData(File.ReadAllBytes(file)));

                // From the trusted balancer, but without a header: reset.
                var missing = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(30), "curl", "-sS", "-m", "10", "--interface", "198.18.0.1", Base + "/whoami");
                output.WriteLine("no header: " + missing);
                Assert.NotEqual(0, missing.ExitCode);
                Assert.DoesNotContain("198.18.0.1", missing.Output, StringComparison.Ordinal);

                // A header from an untrusted address: reset before a byte is read.
                var untrusted = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(30), "curl", "-sS", "-m", "10", "--haproxy-protocol", "--interface", "198.18.0.4", Base + "/whoami");
                output.WriteLine("untrusted: " + untrusted);
                Assert.NotEqual(0, untrusted.ExitCode);
                Assert.DoesNotContain("198.18.0.4", untrusted.Output, StringComparison.Ordinal);

                Assert.Equal(0, sample.Stop(TimeSpan.FromSeconds(30)));
                Assert.Contains("header missing", sample.Output, StringComparison.Ordinal);
                Assert.Contains("PROXY protocol: connection from 198.18.0.4:", sample.Output, StringComparison.Ordinal);
                Assert.Contains("header untrusted", sample.Output, StringComparison.Ordinal);
                Assert.Contains("HelloServer stopped; pinned bytes: 0", sample.Output, StringComparison.Ordinal);
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
}
