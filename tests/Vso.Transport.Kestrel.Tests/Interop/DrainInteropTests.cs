using System.Globalization;
using System.Text.Json;
using Vso.Transport.Tests.Interop;
using Xunit.Abstractions;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// Issue 15 item 3 against the kernel's TCP: the HelloServer sample on AF_PACKET is stopped (SIGTERM) while a kernel
/// client keeps 8 keep-alive connections busy with 512 KiB downloads for 10 s. The client records when each request was
/// sent and how it ended; the stop comes once 40 requests have completed. Every request sent before the stop must complete (status 200, the whole body); requests in
/// progress at the stop must be among them (the drain let them finish); after the stop new connections are refused;
/// the transport's drain log counts them drained and none reset.
/// </summary>
public sealed class DrainInteropTests(ITestOutputHelper output)
{
    private const string Base = "http://198.18.0.2:8080";
    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNameCaseInsensitive = true };

    // Workers on keep-alive connections; a record per request: sent and ended (wall clock, as the test's), outcome.
    private const string Client = """
        import json, socket, sys, threading, time
        host, port, n, seconds, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        records, lock = [], threading.Lock()
        end_at = time.time() + seconds
        def read_response(s):
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d: raise EOFError("closed before the head")
                buf += d
            head, body = buf.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            status = int(lines[0].split(" ")[1])
            length = next(int(l.split(":")[1]) for l in lines if l.lower().startswith("content-length:"))
            close = any(l.lower() == "connection: close" for l in lines)
            got = len(body)
            while got < length:
                d = s.recv(1 << 20)
                if not d: raise EOFError(f"closed after {got} of {length} body bytes")
                got += len(d)
            return status, got == length, close
        def worker():
            s = None
            while time.time() < end_at:
                if s is None:
                    t = time.time()
                    try:
                        s = socket.create_connection((host, port), timeout=10)
                    except OSError as e:
                        with lock: records.append({"sent": t, "ended": time.time(), "kind": "connect", "error": type(e).__name__})
                        time.sleep(0.02)
                        continue
                t = time.time()
                try:
                    s.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                    status, whole, close = read_response(s)
                    kind = "ok" if status == 200 and whole else f"status {status}"
                    with lock:
                        records.append({"sent": t, "ended": time.time(), "kind": kind, "error": ""})
                        if sum(1 for r in records if r["kind"] == "ok") == 40: print("warm", flush=True)
                    if close:
                        s.close(); s = None
                except (OSError, EOFError, StopIteration) as e:
                    with lock: records.append({"sent": t, "ended": time.time(), "kind": "request", "error": f"{type(e).__name__}: {e}"})
                    s.close(); s = None
            if s is not None: s.close()
        threads = [threading.Thread(target=worker) for _ in range(workers)]
        for th in threads: th.start()
        for th in threads: th.join()
        print(json.dumps(records))
        """;

    [RootFact]
    public void Stopping_under_load_fails_no_request_sent_before_the_stop()
    {
        var namespaces = new List<string>();
        var temp = Directory.CreateTempSubdirectory("vso-drain-");
        var script = Path.Combine(temp.FullName, "drain.py");
        File.WriteAllText(script, Client);
        using (var net = new NetnsHarness(RealLinkKind.AfPacket))
        {
            namespaces.Add(net.Client);
            namespaces.Add(net.Server);
            var environment = new Dictionary<string, string>
            {
                ["Transport"] = "Vso",
                ["Vso__Backend"] = "AfPacket",
                ["Vso__Interface"] = net.StackDevice,
                ["Vso__Address"] = "198.18.0.2/24",
                ["Vso__DrainTimeout"] = "00:00:20",
                ["Logging__LogLevel__Default"] = "Warning",
                ["Logging__LogLevel__Vso.Transport.Kestrel"] = "Information",
            };
            using var sample = SampleServer.Start(net.Server, environment, "--urls", Base);
            try
            {
                // Stopped once 40 requests have completed (the server is warm and every worker busy).
                using var load = BackgroundCommand.StartIn(net.Client, "python3", script, "198.18.0.2", "8080", (512 << 10).ToString(CultureInfo.InvariantCulture), "10", "8");
                Assert.True(load.WaitForOutput("warm", TimeSpan.FromSeconds(30)), $"the client never got 40 answers: {load.Output} {load.Error}");
                Thread.Sleep(300);
                var stopAt = DateTime.UtcNow;
                var exit = sample.Stop(TimeSpan.FromSeconds(30));
                var result = load.Wait(TimeSpan.FromSeconds(60));
                Assert.True(result.ExitCode == 0, $"the client failed: {result.Error}");
                var records = JsonSerializer.Deserialize<Record[]>(result.Output.Trim().Split('\n')[^1], JsonOptions)!;
                var stop = (stopAt - DateTime.UnixEpoch).TotalSeconds;

                var before = records.Where(r => r.Sent < stop).ToArray();
                var failedBefore = before.Where(r => r.Kind != "ok").ToArray();
                var inProgress = before.Where(r => r.Kind == "ok" && r.Ended > stop).ToArray();
                var after = records.Where(r => r.Sent >= stop).ToArray();
                output.WriteLine($"exit {exit}; before the stop: {before.Length} requests, {failedBefore.Length} failed, {inProgress.Length} in progress at the stop and completed; after: {after.Length} ({string.Join(", ", after.GroupBy(r => r.Kind).Select(g => $"{g.Count()} {g.Key}"))})");
                foreach (var r in failedBefore.Take(10))
                {
                    output.WriteLine($"  failed: sent {r.Sent - stop:F4} s, ended {r.Ended - stop:F4} s from the stop: {r.Kind} {r.Error}");
                }

                Assert.Equal(0, exit);
                Assert.True(before.Length > 50, $"only {before.Length} requests before the stop");
                Assert.Empty(failedBefore);
                Assert.NotEmpty(inProgress);
                Assert.Contains(after, r => r.Kind == "connect");
                Assert.Contains("draining", sample.Output, StringComparison.Ordinal);
                Assert.Matches(@"drained: \d+ connections finished, 0 reset", sample.Output);
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

    private sealed record Record(double Sent, double Ended, string Kind, string Error);
}
