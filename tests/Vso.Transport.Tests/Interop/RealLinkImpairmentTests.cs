using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// Transfers between the kernel's TCP and the stack on real links, judged by tshark and nstat: clean, under random
/// loss each way (iptables statistic on the client's INPUT and OUTPUT), and under a 100 Mbit/s token bucket.
/// Sizes keep the suite within a few minutes. The lossy downloads (the stack sending) stay small: at 1 % loss they run
/// at 6–7 MiB/s, at 5 % about 1 MiB/s, with either AF_PACKET ring and over TAP alike, so the link's latency is not
/// the bound: after each recovery the stack's window is a few segments, a lone segment in flight waits for the
/// kernel receiver's 40 ms delayed ACK, and a lost retransmission waits for a 200 ms RTO (client captures, 2025).
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkImpairmentTests(ITestOutputHelper output)
{
    private const long MiB = 1 << 20;

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    public async Task Clean_transfers_pass_the_judges(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        rig.Judged(() => Transfers(rig, kind, "clean", 16 * MiB));
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket, 0.01, 8)]
    [InlineData(RealLinkKind.Tap, 0.01, 8)]
    [InlineData(RealLinkKind.AfPacket, 0.05, 2)]
    [InlineData(RealLinkKind.Tap, 0.05, 2)]
    public async Task Transfers_survive_random_loss_each_way(RealLinkKind kind, double loss, int mebibytes)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        rig.Net.AddLoss(loss);
        rig.Judged(() => Transfers(rig, kind, $"{loss:P0} loss each way", mebibytes * MiB));
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    public async Task Transfers_under_a_100_Mbit_token_bucket(RealLinkKind kind)
    {
        await using var rig = RealLinkRig.Start(kind, output);
        rig.Net.AddRateLimit("100mbit");
        rig.Judged(() => Transfers(rig, kind, "tbf 100mbit on the client", 8 * MiB));
    }

    private void Transfers(RealLinkRig rig, RealLinkKind kind, string condition, long size)
    {
        var small = rig.Download(1024, maxSeconds: 30);
        Assert.Equal(TinyHttpServer.ExpectedSha256(1024), small.Sha256);
        var down = rig.Download(size, maxSeconds: 90);
        Assert.Equal(size, down.Length);
        Assert.Equal(TinyHttpServer.ExpectedSha256(size), down.Sha256);
        if (rig.Http.LastDownloadInfo is { } info)
        {
            output.WriteLine($"stack sender: retransmitted {info.RetransmittedSegments}, timeouts {info.Timeouts}, fast recoveries {info.FastRetransmits}, " +
                $"tail loss probes {info.TailLossProbes}, RACK losses {info.RackLosses}, undos {info.Undos}, srtt {info.SmoothedRtt.TotalMilliseconds} ms, recovery {info.LossRecovery}");
        }

        var up = rig.Upload(size, maxSeconds: 90);
        Assert.Equal(up.Expected, up.Answer);
        var mib = size / (double)MiB;
        output.WriteLine($"{kind}, {condition}: 1 KiB in {small.Seconds * 1000:F0} ms; {mib:F0} MiB down in {down.Seconds:F2} s ({mib / down.Seconds:F1} MiB/s), " +
            $"up in {up.Seconds:F2} s ({mib / up.Seconds:F1} MiB/s)");
    }
}
