using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// The stack on a real link (AF_PACKET or AF_XDP on a veth, or a TAP device) against the Linux kernel's TCP as the client,
/// each test in its own network namespaces. Every transfer is checked by SHA-256.
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkInteropTests(ITestOutputHelper output)
{
    private const long MiB = 1 << 20;

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Ping_is_answered(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        var result = rig.Client(TimeSpan.FromSeconds(15), "ping", "-c", "3", "-i", "0.2", "-W", "2", NetnsHarness.StackAddress);
        output.WriteLine(result.Output);
        Assert.True(result.ExitCode == 0, $"ping: {result}");
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Closed_port_is_refused_with_RST(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var result = rig.Curl(10, $"http://{NetnsHarness.StackAddress}:81/");
        var elapsed = started.Elapsed;
        Assert.True(result.ExitCode == 7, $"curl to a closed port should fail with 7 (couldn't connect: refused): {result}");

        // A RST refuses at once; a silently dropped SYN would take curl's whole connect timeout.
        Assert.True(elapsed < TimeSpan.FromSeconds(3), $"refusal took {elapsed}");
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Curl_downloads_1_KiB(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        var (seconds, sha, length) = rig.Download(1024, maxSeconds: 10);
        Assert.Equal(1024, length);
        Assert.Equal(TinyHttpServer.ExpectedSha256(1024), sha);
        output.WriteLine($"{kind}: 1 KiB in {seconds * 1000:F1} ms (curl process included)");
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Curl_downloads_64_MiB(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        var (seconds, sha, length) = rig.Download(64 * MiB);
        Assert.Equal(64 * MiB, length);
        Assert.Equal(TinyHttpServer.ExpectedSha256(64 * MiB), sha);
        output.WriteLine($"{kind}: 64 MiB download in {seconds:F2} s = {64 / seconds:F0} MiB/s");
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Curl_uploads_64_MiB(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        var (seconds, expected, answer) = rig.Upload(64 * MiB);
        Assert.Equal(expected, answer);
        output.WriteLine($"{kind}: 64 MiB upload in {seconds:F2} s = {64 / seconds:F0} MiB/s");
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Hundred_concurrent_connections(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        const int count = 100;
        const long size = 100_000;
        var before = rig.Http.ConnectionsAccepted;
        var pattern = Path.Combine(rig.Directory, "p#1");
        var result = rig.Curl(60, "--parallel", "--parallel-immediate", "--parallel-max", $"{count}", "-o", pattern, RealLinkRig.Url($"/bytes/{size}?n=[1-{count}]"));
        Assert.True(result.ExitCode == 0, $"curl --parallel: {result}");
        var expected = TinyHttpServer.ExpectedSha256(size);
        for (var i = 1; i <= count; i++)
        {
            Assert.Equal(expected, RealLinkRig.Sha256OfFile(Path.Combine(rig.Directory, $"p{i}")));
        }

        var connections = rig.Http.ConnectionsAccepted - before;
        output.WriteLine($"{kind}: {count} transfers over {connections} connections");
        Assert.Equal(count, connections);
    }
}

[CollectionDefinition("RealLinks", DisableParallelization = true)]
public sealed class RealLinksCollection;
