using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Links;
using Vso.Transport.Native;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>A theory that runs only as root (it creates network namespaces); CI runs as root.</summary>
public sealed class RootTheoryAttribute : TheoryAttribute
{
    public RootTheoryAttribute()
    {
        if (LinuxNative.geteuid() != 0)
        {
            Skip = "Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN) to create network namespaces.";
        }
    }
}

/// <summary>A fact that runs only as root (it creates network namespaces); CI runs as root.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (LinuxNative.geteuid() != 0)
        {
            Skip = "Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN) to create network namespaces.";
        }
    }
}

/// <summary>
/// One interop setup: the namespaces, a real link in them, a stack at 198.18.0.2 with a <see cref="TinyHttpServer"/>
/// on port 8080, and helpers that run the kernel's tools as the client. Deletes everything on dispose.
/// </summary>
internal sealed class RealLinkRig : IAsyncDisposable
{
    public const ushort Port = 8080;

    private const int MiB = 1 << 20;

    private readonly ITestOutputHelper _output;
    private bool _disposed;

    private RealLinkRig(RealLinkKind kind, ITestOutputHelper output, NetnsHarness net, ILink link, VsoStack stack, TinyHttpServer http, string directory, PinnedBlockPool? pool)
    {
        UmemPool = pool;
        Kind = kind;
        _output = output;
        Net = net;
        Link = link;
        Stack = stack;
        Http = http;
        Directory = directory;
    }

    public RealLinkKind Kind { get; }

    /// <summary>AF_XDP over a pinned pool: the pool whose region is the UMEM, from whose blocks the server sends.</summary>
    public PinnedBlockPool? UmemPool { get; }

    public NetnsHarness Net { get; }

    public ILink Link { get; }

    public VsoStack Stack { get; }

    public TinyHttpServer Http { get; }

    /// <summary>A private temporary directory, deleted on dispose.</summary>
    public string Directory { get; }

    public static string Url(string path) => $"http://{NetnsHarness.StackAddress}:{Port}{path}";

    public static RealLinkRig Start(
        RealLinkKind kind,
        ITestOutputHelper output,
        Action<TcpSettings>? configure = null,
        bool offloadsOff = true,
        AfPacketReceiveRing ring = AfPacketReceiveRing.V2,
        bool attachToExistingTap = false,
        AfXdpMode xdpMode = AfXdpMode.Auto,
        Action<TapLinkOptions>? configureTap = null,
        bool xdpOnPool = false,
        int queues = 1,
        int engines = 1,
        FaultOptions? stackFaults = null,
        bool afPacketOffload = true)
    {
        var net = new NetnsHarness(kind, offloadsOff, Math.Max(queues, engines));
        ILink? link = null;
        PinnedBlockPool? pool = xdpOnPool
            ? new PinnedBlockPool(new PinnedBlockPoolOptions { ContiguousBytes = (Math.Max(queues, engines) * 16 * MiB) + (32 * MiB) })
            : null;
        VsoStack? stack = null;
        try
        {
            var logger = new TestOutputLogger(output);
            if (attachToExistingTap)
            {
                // The device exists before the link, with its kernel address: the link attaches (Create = false)
                // and configures nothing.
                net.CreatePersistentTap();
            }

            if (engines > 1 && kind == RealLinkKind.AfXdp)
            {
                // The public way: VsoStack opens one AF_XDP link per engine, engine k on queue k, all in the server namespace.
                var xdpTcp = new TcpSettings { Nagle = false };
                configure?.Invoke(xdpTcp);
                var xdp = new AfXdpLinkOptions { InterfaceName = net.StackDevice, Mode = xdpMode, UmemPool = pool, Faults = stackFaults };
                var xdpOptions = new VsoStackOptions { Address = Ipv4Address.Parse(NetnsHarness.StackAddress), PrefixLength = 24, Tcp = xdpTcp, Engines = engines };
                stack = NetnsHarness.RunIn(net.Server, () => new VsoStack(xdp, xdpOptions, virtualTime: null, new TestOutputLoggerFactory(logger)));
                stack.Start();
                var xdpHttp = new TinyHttpServer(stack, Port) { ShardOf = static c => c.Endpoint.Shard.ShardIndex, SendPool = pool };
                var xdpDirectory = System.IO.Directory.CreateTempSubdirectory("vso-interop-").FullName;
                return new RealLinkRig(kind, output, net, stack.Core.Link, stack, xdpHttp, xdpDirectory, pool);
            }

            if (engines > 1 && kind == RealLinkKind.Tap)
            {
                // A multi-queue TAP device made by the stack itself through its public options (VsoStack.PlanShards): queue k
                // for engine k, opened in the namespace in shard order, the steering program attached by queue 0.
                var shardTcp = new TcpSettings { Nagle = false };
                configure?.Invoke(shardTcp);
                var tap = new TapLinkOptions
                {
                    Name = net.StackDevice,
                    Create = true,
                    Mtu = 1500,
                    KernelAddress = System.Net.IPAddress.Parse(NetnsHarness.KernelAddress),
                    KernelPrefixLength = 24,
                    Faults = stackFaults,
                };
                configureTap?.Invoke(tap);
                var stackOptions = new VsoStackOptions { Address = System.Net.IPAddress.Parse(NetnsHarness.StackAddress), PrefixLength = 24, Tcp = shardTcp, Engines = engines };
                stack = NetnsHarness.RunIn(net.Server, () => new VsoStack(tap, stackOptions, loggerFactory: new TestOutputLoggerFactory(logger)));
                if (offloadsOff)
                {
                    net.PrepareTapDevice();
                }

                stack.Start();
                var tapHttp = new TinyHttpServer(stack, Port) { ShardOf = static c => c.Endpoint.Shard.ShardIndex };
                var tapDirectory = System.IO.Directory.CreateTempSubdirectory("vso-interop-").FullName;
                return new RealLinkRig(kind, output, net, stack.Core.Link, stack, tapHttp, tapDirectory, null);
            }

            if (engines > 1)
            {
                // AF_PACKET with one socket per shard in one fanout group, opened in the server namespace in shard order.
                var group = (ushort)(1 + (Environment.ProcessId % 60000));
                var shardTcp = new TcpSettings { Nagle = false };
                configure?.Invoke(shardTcp);
                stack = new VsoStack(
                    (_, _) => NetnsHarness.RunIn<ILink>(net.Server, () => new AfPacketLink(new AfPacketLinkOptions { InterfaceName = net.StackDevice, ReceiveRing = ring, FanoutGroup = group }, logger)),
                    engines,
                    new VsoStackOptions { Address = Ipv4Address.Parse(NetnsHarness.StackAddress), PrefixLength = 24, Tcp = shardTcp },
                    loggerFactory: new TestOutputLoggerFactory(logger));
                stack.Start();
                var shardedHttp = new TinyHttpServer(stack, Port) { ShardOf = static c => c.Endpoint.Shard.ShardIndex };
                var shardedDirectory = System.IO.Directory.CreateTempSubdirectory("vso-interop-").FullName;
                return new RealLinkRig(kind, output, net, stack.Core.Link, stack, shardedHttp, shardedDirectory, null);
            }

            link = kind switch
            {
                RealLinkKind.AfPacket => NetnsHarness.RunIn<ILink>(net.Server, () => new AfPacketLink(new AfPacketLinkOptions { InterfaceName = net.StackDevice, ReceiveRing = ring, SegmentationOffload = afPacketOffload }, logger)),
                RealLinkKind.AfXdp => NetnsHarness.RunIn<ILink>(net.Server, () => new AfXdpLink(
                    new AfXdpLinkOptions { InterfaceName = net.StackDevice, Address = Ipv4Address.Parse(NetnsHarness.StackAddress), Mode = xdpMode, UmemPool = pool, Queues = queues }, logger)),
                _ => NetnsHarness.RunIn<ILink>(net.Server, () =>
                {
                    var tap = new TapLinkOptions
                    {
                        Name = net.StackDevice,
                        Create = !attachToExistingTap,
                        Mtu = attachToExistingTap ? null : 1500,
                        KernelAddress = attachToExistingTap ? null : Ipv4Address.Parse(NetnsHarness.KernelAddress),
                        KernelPrefixLength = 24,
                    };
                    configureTap?.Invoke(tap);
                    return new TapLink(tap, logger);
                }),
            };
            if (kind == RealLinkKind.Tap && offloadsOff)
            {
                // Off: the kernel sums and cuts its own frames before the stack reads them. Left on (TapLink's
                // TUNSETOFFLOAD), it hands over TSO super-frames and checksums to finish.
                net.PrepareTapDevice();
            }

            var tcp = new TcpSettings { Nagle = false };
            configure?.Invoke(tcp);
            stack = new VsoStack(link, new VsoStackOptions { Address = Ipv4Address.Parse(NetnsHarness.StackAddress), PrefixLength = 24, Tcp = tcp }, loggerFactory: new TestOutputLoggerFactory(logger));
            stack.Start();
            var http = new TinyHttpServer(stack, Port) { SendPool = pool };
            var directory = System.IO.Directory.CreateTempSubdirectory("vso-interop-").FullName;
            return new RealLinkRig(kind, output, net, link, stack, http, directory, pool);
        }
        catch
        {
            stack?.Dispose();
            link?.Dispose();
            pool?.Dispose();
            net.Dispose();
            throw;
        }
    }

    /// <summary>Runs a command in the client namespace.</summary>
    public CommandResult Client(TimeSpan timeout, string file, params string[] arguments)
    {
        var result = NetnsHarness.Exec(Net.Client, timeout, file, arguments);
        return result;
    }

    public Task<CommandResult> ClientAsync(TimeSpan timeout, string file, params string[] arguments) =>
        Task.Run(() => Client(timeout, file, arguments));

    /// <summary>curl in the client namespace (no proxy, fail on HTTP errors, bounded).</summary>
    public CommandResult Curl(int maxSeconds, params string[] arguments) =>
        Client(TimeSpan.FromSeconds(maxSeconds + 10), "curl", ["--noproxy", "*", "-sS", "--fail", "--max-time", maxSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture), .. arguments]);

    /// <summary>Downloads /bytes/N into a file and returns (seconds, sha256).</summary>
    public (double Seconds, string Sha256, long Length) Download(long length, int maxSeconds = 60)
    {
        var file = Path.Combine(Directory, $"download-{length}-{Guid.NewGuid():N}");
        var started = System.Diagnostics.Stopwatch.StartNew();
        var result = Curl(maxSeconds, "-o", file, Url($"/bytes/{length}"));
        var seconds = started.Elapsed.TotalSeconds;
        Assert.True(result.ExitCode == 0, $"curl download of {length} bytes: {result}");
        var sha = Sha256OfFile(file);
        var size = new FileInfo(file).Length;
        File.Delete(file);
        return (seconds, sha, size);
    }

    /// <summary>Uploads <paramref name="length"/> random bytes with PUT; returns (seconds, expected sha256, the server's answer).</summary>
    /// <summary>Downloads and uploads <paramref name="length"/> bytes, each checked by SHA-256, and logs both rates.</summary>
    public void DownloadAndUpload(long length, int maxSeconds)
    {
        var down = Download(length, maxSeconds);
        Assert.Equal(length, down.Length);
        Assert.Equal(TinyHttpServer.ExpectedSha256(length), down.Sha256);

        var up = Upload(length, maxSeconds);
        Assert.Equal(up.Expected, up.Answer);
        var mib = length / (double)(1 << 20);
        _output.WriteLine($"{mib:F0} MiB down in {down.Seconds:F2} s ({mib / down.Seconds:F0} MiB/s), up in {up.Seconds:F2} s ({mib / up.Seconds:F0} MiB/s)");
    }

    public (double Seconds, string Expected, string Answer) Upload(long length, int maxSeconds = 60)
    {
        var file = Path.Combine(Directory, $"upload-{length}");
        using (var stream = File.Create(file))
        {
            var chunk = new byte[1 << 20];
            for (long written = 0; written < length;)
            {
                RandomNumberGenerator.Fill(chunk);
                var n = (int)Math.Min(chunk.Length, length - written);
                stream.Write(chunk, 0, n);
                written += n;
            }
        }

        var expected = Sha256OfFile(file);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var result = Curl(maxSeconds, "-T", file, Url("/upload"));
        var seconds = started.Elapsed.TotalSeconds;
        File.Delete(file);
        Assert.True(result.ExitCode == 0, $"curl upload of {length} bytes: {result}");
        return (seconds, expected, result.Output.Trim());
    }

    public static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    public void Log(string message)
    {
        try
        {
            _output.WriteLine(message);
        }
        catch (InvalidOperationException)
        {
        }
    }

    /// <summary>The kernel client's count of TCP segments received with bad checksums (nstat -a).</summary>
    public long ClientTcpInCsumErrors()
    {
        var result = Client(TimeSpan.FromSeconds(10), "nstat", "-asz", "TcpInCsumErrors");
        foreach (var line in result.Output.Split('\n'))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 2 && fields[0] == "TcpInCsumErrors")
            {
                return long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"nstat gave no TcpInCsumErrors: {result}");
    }

    /// <summary>
    /// Runs <paramref name="transfers"/> under a tshark capture on the client's device, then asserts that tshark
    /// finds no malformed frame and no bad IPv4/TCP checksum, and that the kernel client counted no TCP checksum
    /// errors (nstat TcpInCsumErrors). Reports the retransmissions tshark saw, per source.
    /// </summary>
    public CaptureVerdict Judged(Action transfers, int maxSeconds = 120)
    {
        var csumBefore = ClientTcpInCsumErrors();
        var file = Path.Combine(Directory, "client.pcapng");
        CaptureVerdict verdict;
        using (var judge = TsharkJudge.Start(Net.Client, Net.ClientCaptureDevice, file, maxSeconds))
        {
            transfers();
            verdict = judge.Stop();
        }

        var csumAfter = ClientTcpInCsumErrors();
        var retrans = string.Join(", ", verdict.RetransmissionsBySource.Select(kv => $"{kv.Value} from {kv.Key}"));
        Log($"tshark: {verdict.Frames} frames, {verdict.BadFromStack} bad from the stack, {verdict.BadFrames - verdict.BadFromStack} from the kernel, super-frames from the stack {verdict.SuperFramesFromStack}, retransmissions {verdict.Retransmissions} ({(retrans.Length == 0 ? "none" : retrans)}); " +
            $"client TcpInCsumErrors {csumBefore} -> {csumAfter}");
        if (Environment.GetEnvironmentVariable("VSO_KEEP_CAPTURE") is { Length: > 0 } keep)
        {
            // Debugging: keep the client capture (e.g. VSO_KEEP_CAPTURE=/tmp/captures) to read it with tshark/wireshark.
            System.IO.Directory.CreateDirectory(keep);
            File.Copy(file, Path.Combine(keep, $"{Net.Client}.pcapng"), overwrite: true);
        }

        File.Delete(file);
        if (verdict.BadFrames > 0)
        {
            Log($"tshark flagged:\n{verdict.BadSample}");
        }

        // The kernel's own frames are not ours to judge (tshark flags a TCP checksum of 0xFFFF, the other zero, as bad).
        Assert.True(verdict.BadFromStack == 0, $"tshark found malformed frames or bad checksums from the stack:\n{verdict.BadSample}");
        Assert.Equal(csumBefore, csumAfter);
        Assert.Equal(0, csumAfter);
        return verdict;
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            await Http.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            Log($"stack: contained exceptions {Stack.ContainedExceptions}, connections left {Stack.ConnectionCount}");
            if (Link is AfXdpLink xdp)
            {
                var (dropped, ringFull, fillEmpty) = xdp.ReadKernelStatistics();
                Log($"AF_XDP: received {xdp.FramesReceived}, transmitted {xdp.FramesTransmitted} ({xdp.FramesSentInPlace} in place, {xdp.FramesCopied} copied), transmit errors {xdp.TransmitErrors}; " +
                    $"kernel: dropped {dropped}, RX ring full {ringFull}, fill ring empty {fillEmpty}");
            }
            if (Link is TapLink tap)
            {
                Log($"TAP: received {tap.FramesReceived} ({tap.SuperFramesReceived} super-frames, {tap.ChecksumsCompleted} checksums finished, " +
                    $"{tap.BadOffloadFrames} bad offload headers), transmitted {tap.FramesTransmitted} ({tap.SuperSegmentsTransmitted} super-segments), transmit errors {tap.TransmitErrors}");
            }

            Stack.Dispose();
            Link.Dispose();
            Http.SendPool = null;
            UmemPool?.Dispose();
            Net.Dispose();
            try
            {
                System.IO.Directory.Delete(Directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}

internal sealed class TestOutputLogger(ITestOutputHelper output) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
        {
            return;
        }

        try
        {
            output.WriteLine($"[{logLevel} {eventId.Id}] {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
        }
        catch (InvalidOperationException)
        {
            // the test already finished
        }
    }
}

internal sealed class TestOutputLoggerFactory(ILogger logger) : ILoggerFactory
{
    public void AddProvider(ILoggerProvider provider)
    {
    }

    public ILogger CreateLogger(string categoryName) => logger;

    public void Dispose()
    {
    }
}
