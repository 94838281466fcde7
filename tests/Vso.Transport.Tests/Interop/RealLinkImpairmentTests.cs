using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// The interop transfers between the kernel's TCP and the stack on real links — curl fetching 1 KiB and 64 MiB from
/// the stack, a 64 MiB upload from the kernel, 100 concurrent connections — each checked by sha256 and judged by
/// tshark and nstat: clean, under 1 % and 5 % random loss each way (iptables statistic on the client's INPUT and
/// OUTPUT), and under a 100 Mbit/s token bucket, on AF_PACKET, TAP and AF_XDP. Every curl is bounded by --max-time.
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkImpairmentTests(ITestOutputHelper output)
{
    private const long MiB = 1 << 20;
    private const long Size = 64 * MiB;

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Clean_transfers_pass_the_judges(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        rig.Judged(() => Transfers(rig, kind, "clean", bulkSeconds: 60));
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket, 0.01)]
    [InlineData(RealLinkKind.Tap, 0.01)]
    [InlineData(RealLinkKind.AfPacket, 0.05)]
    [InlineData(RealLinkKind.Tap, 0.05)]
    [InlineData(RealLinkKind.AfXdp, 0.01)]
    [InlineData(RealLinkKind.AfXdp, 0.05)]
    public async Task Transfers_survive_random_loss_each_way(RealLinkKind kind, double loss)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        rig.Net.AddLoss(loss);
        rig.Judged(() => Transfers(rig, kind, $"{loss:P0} loss each way", bulkSeconds: 120), maxSeconds: 400);
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    [InlineData(RealLinkKind.AfXdp)]
    public async Task Transfers_under_a_100_Mbit_token_bucket(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        rig.Net.AddRateLimit("100mbit");
        rig.Judged(() => Transfers(rig, kind, "tbf 100mbit on the client", bulkSeconds: 60), maxSeconds: 200);
    }

    private void Transfers(RealLinkRig rig, RealLinkKind kind, string condition, int bulkSeconds)
    {
        var small = rig.Download(1024, maxSeconds: 30);
        Assert.Equal(TinyHttpServer.ExpectedSha256(1024), small.Sha256);

        var down = rig.Download(Size, maxSeconds: bulkSeconds);
        Assert.Equal(Size, down.Length);
        Assert.Equal(TinyHttpServer.ExpectedSha256(Size), down.Sha256);
        if (rig.Http.LastDownloadInfo is { } info)
        {
            output.WriteLine($"stack sender: {info.SegmentsSent} segments, retransmitted {info.RetransmittedSegments}, timeouts {info.Timeouts}, fast recoveries {info.FastRetransmits}, " +
                $"tail loss probes {info.TailLossProbes}, RACK losses {info.RackLosses}, undos {info.Undos}, srtt {info.SmoothedRtt.TotalMilliseconds} ms, recovery {info.LossRecovery}");
        }

        var up = rig.Upload(Size, maxSeconds: bulkSeconds);
        Assert.Equal(up.Expected, up.Answer);

        var concurrent = Concurrent(rig, count: 100, size: 100_000, maxSeconds: 60);
        var mib = Size / (double)MiB;
        output.WriteLine($"{kind}, {condition}: 1 KiB in {small.Seconds * 1000:F0} ms; {mib:F0} MiB down in {down.Seconds:F2} s ({mib / down.Seconds:F1} MiB/s), " +
            $"up in {up.Seconds:F2} s ({mib / up.Seconds:F1} MiB/s); 100 concurrent connections of 100 kB in {concurrent:F2} s");
    }

    /// <summary><paramref name="count"/> parallel curl transfers, one connection each, every file checked by sha256.</summary>
    private static double Concurrent(RealLinkRig rig, int count, long size, int maxSeconds)
    {
        var before = rig.Http.ConnectionsAccepted;
        var pattern = Path.Combine(rig.Directory, "p#1");
        var started = System.Diagnostics.Stopwatch.StartNew();
        var result = rig.Curl(maxSeconds, "--parallel", "--parallel-immediate", "--parallel-max", $"{count}", "-o", pattern, RealLinkRig.Url($"/bytes/{size}?n=[1-{count}]"));
        var seconds = started.Elapsed.TotalSeconds;
        Assert.True(result.ExitCode == 0, $"curl --parallel: {result}");
        var expected = TinyHttpServer.ExpectedSha256(size);
        for (var i = 1; i <= count; i++)
        {
            var file = Path.Combine(rig.Directory, $"p{i}");
            Assert.Equal(expected, RealLinkRig.Sha256OfFile(file));
            File.Delete(file);
        }

        Assert.Equal(count, rig.Http.ConnectionsAccepted - before);
        return seconds;
    }
}
