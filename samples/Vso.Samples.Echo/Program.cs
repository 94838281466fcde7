using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;

// Two Vso stacks joined by a simulated Ethernet wire. The server echoes; the client sends a seeded
// random payload, reads the echo back and checks its SHA-256. Every byte is sent from the
// application's own pinned memory (no copy up front): see README.md.
//
//   dotnet run --project samples/Vso.Samples.Echo -c Release -- [--virtual] [--mib N] [--copy]
//                                                                [--delay-us N] [--loss P] [--seed N]
var options = EchoOptions.Parse(args);
if (options is null)
{
    return 2;
}

return options.Virtual ? RunVirtual(options) : await RunRealTimeAsync(options).ConfigureAwait(false);

static int RunVirtual(EchoOptions o)
{
    // Continuations run inline on this thread, inside the driver's loop: a deterministic run.
    SynchronizationContext.SetSynchronizationContext(null);
    var driver = new VirtualTimeDriver();
    var (a, b) = Wire(o);
    using var client = new VsoStack(a, Echo.StackOptions(Echo.ClientAddress, o, inline: true), driver);
    using var server = new VsoStack(b, Echo.StackOptions(Echo.ServerAddress, o, inline: true), driver);

    var wall = Stopwatch.StartNew();
    var start = driver.Now;
    var run = Echo.RunAsync(client, server, o);
    if (!driver.RunUntil(() => run.IsCompleted, TimeSpan.FromHours(1)))
    {
        Console.Error.WriteLine("The echo did not finish within an hour of virtual time.");
        return 1;
    }

    var result = run.GetAwaiter().GetResult();
    return Echo.Report(result, o, $"virtual time ({wall.Elapsed.TotalMilliseconds:F0} ms of wall time)", driver.Now - start, "of virtual time");
}

static async Task<int> RunRealTimeAsync(EchoOptions o)
{
    var (a, b) = Wire(o);
    using var client = new VsoStack(a, Echo.StackOptions(Echo.ClientAddress, o, inline: false));
    using var server = new VsoStack(b, Echo.StackOptions(Echo.ServerAddress, o, inline: false));
    client.Start();
    server.Start();

    var wall = Stopwatch.StartNew();
    var run = Echo.RunAsync(client, server, o);
    if (await Task.WhenAny(run, Task.Delay(TimeSpan.FromMinutes(2))).ConfigureAwait(false) != run)
    {
        Console.Error.WriteLine("The echo did not finish within 2 minutes.");
        return 1;
    }

    var result = await run.ConfigureAwait(false);
    return Echo.Report(result, o, "real time (two engine threads, system clock)", wall.Elapsed, "of wall time");
}

// Both ends of one simulated wire; with --loss each end loses that share of its frames, seeded.
static (VsoLinkOptions A, VsoLinkOptions B) Wire(EchoOptions o)
{
    var (a, b) = new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMicroseconds(o.DelayMicroseconds) }.CreatePair();
    if (o.Loss > 0)
    {
        a.Faults = new FaultOptions { Seed = o.Seed, LossRate = o.Loss };
        b.Faults = new FaultOptions { Seed = o.Seed, LossRate = o.Loss };
    }

    return (a, b);
}

internal sealed record EchoOptions(bool Virtual, int MiB, IdentifyMode Mode, int DelayMicroseconds, double Loss, ulong Seed)
{
    public static EchoOptions? Parse(string[] args)
    {
        var o = new EchoOptions(false, 16, IdentifyMode.Pinned, 100, 0, 1);
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--virtual": o = o with { Virtual = true }; break;
                case "--copy": o = o with { Mode = IdentifyMode.Copy }; break;
                case "--mib" when i + 1 < args.Length: o = o with { MiB = int.Parse(args[++i]) }; break;
                case "--delay-us" when i + 1 < args.Length: o = o with { DelayMicroseconds = int.Parse(args[++i]) }; break;
                case "--loss" when i + 1 < args.Length: o = o with { Loss = double.Parse(args[++i]) }; break;
                case "--seed" when i + 1 < args.Length: o = o with { Seed = ulong.Parse(args[++i]) }; break;
                default:
                    Console.Error.WriteLine($"Unknown argument '{args[i]}'. Use: [--virtual] [--mib N] [--copy] [--delay-us N] [--loss P] [--seed N]");
                    return null;
            }
        }

        if (o.MiB is < 1 or > 4096 || o.DelayMicroseconds < 0 || o.Loss is < 0 or >= 1)
        {
            Console.Error.WriteLine("--mib takes 1 to 4096, --delay-us a non-negative number, --loss 0 to 0.99.");
            return null;
        }

        return o;
    }
}

internal sealed record EchoResult(long Sent, long Received, bool HashMatches, string Hash, TcpConnectionInfo Client, TcpConnectionInfo Server);

internal static class Echo
{
    public static readonly IPAddress ClientAddress = IPAddress.Parse("198.18.0.1");
    public static readonly IPAddress ServerAddress = IPAddress.Parse("198.18.0.2");
    private const ushort Port = 7;
    private const int Chunk = 64 * 1024;
    private const int Window = 16; // sends in flight per side: 1 MiB of application buffers

    public static VsoStackOptions StackOptions(IPAddress address, EchoOptions o, bool inline) => new()
    {
        Address = address,
        PrefixLength = 24,
        InlineContinuations = inline,
        Tcp = new TcpSettings { IdentifyMode = o.Mode },
    };

    public static async Task<EchoResult> RunAsync(VsoStack client, VsoStack server, EchoOptions o)
    {
        using var listener = server.Listen(Port);
        var accepted = listener.AcceptAsync().AsTask();
        var connection = await client.ConnectAsync(ServerAddress, Port).ConfigureAwait(false);
        var peer = await accepted.ConfigureAwait(false);
        var serving = ServeAsync(peer);

        var payload = new byte[o.MiB << 20];
        new Random((int)o.Seed).NextBytes(payload);
        var receiving = ReceiveAllAsync(connection);
        await SendAllAsync(connection, payload).ConfigureAwait(false);
        var (received, hash) = await receiving.ConfigureAwait(false);
        await serving.ConfigureAwait(false);
        var clientInfo = connection.GetInfo();
        var serverInfo = peer.GetInfo();
        await connection.CloseAsync().ConfigureAwait(false);
        await peer.Closed.ConfigureAwait(false);
        var expected = SHA256.HashData(payload);
        return new EchoResult(payload.Length, received, expected.AsSpan().SequenceEqual(hash), Convert.ToHexStringLower(hash), clientInfo, serverInfo);
    }

    /// <summary>Echoes until the client half-closes, with up to <see cref="Window"/> buffers still being sent.</summary>
    private static async Task ServeAsync(VsoConnection connection)
    {
        var buffers = new byte[Window][];
        var sends = new Task[Window];
        for (var i = 0; i < Window; i++)
        {
            buffers[i] = new byte[Chunk];
            sends[i] = Task.CompletedTask;
        }

        for (var slot = 0; ; slot = (slot + 1) % Window)
        {
            await sends[slot].ConfigureAwait(false); // the buffer is ours again once acknowledged
            var n = await connection.ReceiveAsync(buffers[slot]).ConfigureAwait(false);
            if (n == 0)
            {
                break;
            }

            sends[slot] = connection.SendAsync(buffers[slot].AsMemory(0, n));
        }

        await Task.WhenAll(sends).ConfigureAwait(false);
        await connection.CloseAsync().ConfigureAwait(false);
    }

    private static async Task SendAllAsync(VsoConnection connection, byte[] data)
    {
        var pending = new Queue<Task>();
        for (var offset = 0; offset < data.Length; offset += Chunk)
        {
            pending.Enqueue(connection.SendAsync(data.AsMemory(offset, Math.Min(Chunk, data.Length - offset))));
            if (pending.Count >= Window)
            {
                await pending.Dequeue().ConfigureAwait(false);
            }
        }

        while (pending.Count > 0)
        {
            await pending.Dequeue().ConfigureAwait(false);
        }

        connection.ShutdownSend();
    }

    private static async Task<(long Length, byte[] Hash)> ReceiveAllAsync(VsoConnection connection)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[Chunk];
        long total = 0;
        while (true)
        {
            var n = await connection.ReceiveAsync(buffer).ConfigureAwait(false);
            if (n == 0)
            {
                return (total, hash.GetHashAndReset());
            }

            hash.AppendData(buffer, 0, n);
            total += n;
        }
    }

    public static int Report(EchoResult r, EchoOptions o, string how, TimeSpan elapsed, string clock)
    {
        var c = r.Client;
        var seconds = Math.Max(elapsed.TotalSeconds, 1e-9);
        Console.WriteLine($"Vso echo: {o.MiB} MiB each way over a SimulatedLink ({o.DelayMicroseconds} us one-way, loss {o.Loss:P1}), identify mode {o.Mode}, {how}");
        Console.WriteLine($"  sent {r.Sent:N0} B, echoed back {r.Received:N0} B in {elapsed.TotalMilliseconds:F1} ms {clock}");
        Console.WriteLine($"  throughput {r.Sent / seconds / 1e6:F1} MB/s each way ({r.Sent * 8 / seconds / 1e9:F2} Gbit/s), {(r.Sent + r.Received) / seconds / 1e6:F1} MB/s both directions");
        Console.WriteLine($"  sha256 {r.Hash} {(r.HashMatches ? "OK (matches what was sent)" : "MISMATCH")}");
        Console.WriteLine($"  client TCP: srtt {c.SmoothedRtt.TotalMilliseconds:F3} ms, rttvar {c.RttVariance.TotalMilliseconds:F3} ms, rto {c.Rto.TotalMilliseconds:F0} ms, cwnd {c.CongestionWindow:N0} B, ssthresh {(c.SlowStartThreshold == long.MaxValue ? "inf" : c.SlowStartThreshold.ToString("N0"))}, mss {c.MaxSegmentSize}");
        Console.WriteLine($"              segments sent {c.SegmentsSent:N0}, received {c.SegmentsReceived:N0}, retransmitted {c.RetransmittedSegments:N0} (timeouts {c.Timeouts}, fast retransmits {c.FastRetransmits}), first-transmission bytes copied {c.FirstTransmissionCopiedBytes:N0} of {c.FirstTransmissionBytes:N0}");
        var s = r.Server;
        Console.WriteLine($"  server TCP: srtt {s.SmoothedRtt.TotalMilliseconds:F3} ms, cwnd {s.CongestionWindow:N0} B, retransmitted {s.RetransmittedSegments:N0}");
        return r.HashMatches && r.Received == r.Sent ? 0 : 1;
    }
}
