using System.Globalization;
using System.Text.Json;
using Vso.Transport.Tests.Interop;
using Xunit.Abstractions;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// Issue 11 item 12, against the kernel's TCP: a client asks for 16 MiB, reads the start of the response, then
/// shutdown(SHUT_WR). The same sample process serves the stack's 198.18.0.2:8080 (Vso, AF_PACKET) and a kernel address
/// 198.18.1.2:8080 (Kestrel's Sockets transport), so both transports run the same Kestrel and the same app. On Sockets,
/// Kestrel hears the client leave (its receive loop reads the FIN and fires ConnectionClosed): the response stops after
/// what the socket had buffered, and the connection ends with FIN, no RST. Vso must do the same by default, and send the
/// whole body with <c>Vso:ConnectionClosedOnPeerFin=false</c>. Every body received is checked byte for byte (SHA-256 of the
/// pattern's prefix of that length); a capture on the client's devices counts RSTs.
/// </summary>
public sealed class HalfCloseInteropTests(ITestOutputHelper output)
{
    private const string VsoHost = "198.18.0.2";
    private const string SocketsHost = "198.18.1.2";
    private const int Length = 16 << 20;
    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNameCaseInsensitive = true };

    // The kernel client: GET, headers and at least 64 KiB of body, SHUT_WR, then read to the end. RST shows as "RST".
    private const string Client = """
        import hashlib, json, socket, sys
        host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        s = socket.create_connection((host, port), timeout=60)
        s.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        buf = bytearray()
        end = None
        shut = False
        try:
            while True:
                h = buf.find(b"\r\n\r\n")
                if not shut and h >= 0 and len(buf) - h - 4 >= 65536:
                    s.shutdown(socket.SHUT_WR)
                    shut = True
                d = s.recv(1 << 20)
                if not d:
                    end = "FIN"
                    break
                buf += d
        except ConnectionResetError:
            end = "RST"
        except socket.timeout:
            end = "TIMEOUT"
        h = buf.find(b"\r\n\r\n")
        body = bytes(buf[h + 4:]) if h >= 0 else b""
        pattern = bytes(i % 251 for i in range(251)) * (len(body) // 251 + 1)
        print(json.dumps({"status": buf[9:12].decode(errors="replace"), "shut": shut, "end": end, "body": len(body),
                          "sha": hashlib.sha256(body).hexdigest(), "want": hashlib.sha256(pattern[:len(body)]).hexdigest()}))
        s.close()
        """;

    [RootFact]
    public void A_client_FIN_mid_response_ends_the_same_way_on_Vso_as_on_Sockets()
    {
        var namespaces = new List<string>();
        var temp = Directory.CreateTempSubdirectory("vso-halfclose-");
        var script = Path.Combine(temp.FullName, "halfclose.py");
        File.WriteAllText(script, Client);
        using (var net = new NetnsHarness(RealLinkKind.AfPacket))
        {
            namespaces.Add(net.Client);
            namespaces.Add(net.Server);
            Shell.Check("ip", "-n", net.Client, "link", "add", "vsoc1", "type", "veth", "peer", "name", "vsos1", "netns", net.Server);
            Shell.Check("ip", "-n", net.Client, "addr", "add", "198.18.1.1/24", "dev", "vsoc1");
            Shell.Check("ip", "-n", net.Server, "addr", "add", SocketsHost + "/24", "dev", "vsos1");
            Shell.Check("ip", "-n", net.Client, "link", "set", "vsoc1", "up");
            Shell.Check("ip", "-n", net.Server, "link", "set", "vsos1", "up");

            // Default settings: one process, both transports.
            var sockets = Run(net, temp.FullName, script, closedOnPeerFin: null, SocketsHost);
            var vso = sockets.Vso;
            Assert.Equal("200", sockets.Other!.Status);
            Assert.True(sockets.Other.Shut);
            Assert.Equal("FIN", sockets.Other.End);
            Assert.Equal(sockets.Other.Want, sockets.Other.Sha);
            Assert.True(sockets.Other.Body < Length, $"Sockets sent the whole body ({sockets.Other.Body} bytes) after the client's FIN");
            Assert.Equal(0, sockets.OtherResets);

            // Vso by default: the same observable behaviour.
            Assert.Equal("200", vso.Status);
            Assert.True(vso.Shut);
            Assert.Equal("FIN", vso.End);
            Assert.Equal(vso.Want, vso.Sha);
            Assert.True(vso.Body < Length, $"Vso sent the whole body ({vso.Body} bytes) after the client's FIN, Sockets {sockets.Other.Body}");
            Assert.Equal(0, sockets.VsoResets);

            // Vso with the setting off: the whole body, then FIN, no RST.
            var whole = Run(net, temp.FullName, script, closedOnPeerFin: false, otherHost: null);
            Assert.Equal("200", whole.Vso.Status);
            Assert.Equal("FIN", whole.Vso.End);
            Assert.Equal(Length, whole.Vso.Body);
            Assert.Equal(whole.Vso.Want, whole.Vso.Sha);
            Assert.Equal(0, whole.VsoResets);
        }

        temp.Delete(recursive: true);
        var left = Shell.Run(TimeSpan.FromSeconds(10), "ip", "netns", "list").Output;
        foreach (var ns in namespaces)
        {
            Assert.DoesNotContain(ns, left, StringComparison.Ordinal);
        }
    }

    private Outcome Run(NetnsHarness net, string dir, string script, bool? closedOnPeerFin, string? otherHost)
    {
        var environment = new Dictionary<string, string>
        {
            ["Transport"] = "Vso",
            ["Vso__Backend"] = "AfPacket",
            ["Vso__Interface"] = net.StackDevice,
            ["Vso__Address"] = VsoHost + "/24",
            ["Logging__LogLevel__Default"] = "Warning",
        };
        if (closedOnPeerFin is { } value)
        {
            environment["Vso__ConnectionClosedOnPeerFin"] = value ? "true" : "false";
        }

        var urls = $"http://{VsoHost}:8080" + (otherHost is null ? "" : $";http://{otherHost}:8080");
        using var sample = SampleServer.Start(net.Server, environment, "--urls", urls);
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (otherHost is not null && !sample.Output.Contains($"listening on http://{otherHost}:8080", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }

            var tag = closedOnPeerFin is null ? "default" : closedOnPeerFin.Value ? "on" : "off";
            var vsoCapture = Path.Combine(dir, $"vso-{tag}.pcapng");
            var otherCapture = Path.Combine(dir, $"sockets-{tag}.pcapng");
            Verdict vso;
            int vsoResets;
            Verdict? other = null;
            var otherResets = 0;
            using (var judge = TsharkJudge.Start(net.Client, net.ClientCaptureDevice, vsoCapture))
            using (var otherJudge = otherHost is null ? null : TsharkJudge.Start(net.Client, "vsoc1", otherCapture))
            {
                vso = Fetch(net, script, VsoHost, tag);
                if (otherHost is not null)
                {
                    other = Fetch(net, script, otherHost, tag + ", Sockets");
                }

                // Let a late RST (for example to the client's close) reach the captures.
                Thread.Sleep(500);
                vsoResets = Resets(judge, checksums: true);
                if (otherJudge is not null)
                {
                    // The kernel's own pair keeps its offloads: its frames leave with checksums the NIC would finish.
                    otherResets = Resets(otherJudge, checksums: false);
                }
            }

            Assert.Equal(0, sample.Stop(TimeSpan.FromSeconds(30)));
            Assert.Contains("HelloServer stopped; pinned bytes: 0", sample.Output, StringComparison.Ordinal);
            return new Outcome(vso, vsoResets, other, otherResets);
        }
        finally
        {
            output.WriteLine("--- sample stdout\n" + sample.Output + "\n--- sample stderr\n" + sample.Error);
        }
    }

    private Verdict Fetch(NetnsHarness net, string script, string host, string tag)
    {
        var result = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(90), "python3", script, host, "8080", Length.ToString(CultureInfo.InvariantCulture));
        output.WriteLine($"{host} ({tag}): {result.Output.Trim()} {result.Error.Trim()}");
        Assert.True(result.ExitCode == 0, $"python3 halfclose.py {host}: {result}");
        var verdict = JsonSerializer.Deserialize<Verdict>(result.Output.Trim().Split('\n')[^1], JsonOptions);
        return verdict ?? throw new InvalidOperationException($"no verdict from the client: {result}");
    }

    private int Resets(TsharkJudge judge, bool checksums)
    {
        var verdict = judge.Stop();
        if (checksums)
        {
            Assert.True(verdict.BadFrames == 0, $"{verdict.BadFrames} bad frames ({verdict.BadFromStack} from the stack):\n{verdict.BadSample}");
        }

        var rst = Shell.Run(TimeSpan.FromSeconds(60), "tshark", "-n", "-r", judge.File, "-o", "tcp.desegment_tcp_streams:FALSE",
            "-Y", "tcp.flags.reset == 1", "-T", "fields", "-e", "ip.src", "-e", "_ws.col.Info");
        Assert.True(rst.ExitCode == 0, $"tshark -r: {rst}");
        var lines = rst.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        output.WriteLine($"{judge.File}: {verdict.Frames} frames, {lines.Length} RST {string.Join(" | ", lines)}");
        return lines.Length;
    }

    private sealed record Verdict(string Status, bool Shut, string End, long Body, string Sha, string Want);

    private sealed record Outcome(Verdict Vso, int VsoResets, Verdict? Other, int OtherResets);
}
