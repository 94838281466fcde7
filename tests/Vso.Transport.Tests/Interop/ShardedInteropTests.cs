using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// A stack of two engines on a two-queue veth (one AF_PACKET socket per engine in one PACKET_FANOUT_CBPF group) against
/// the kernel's curl: 100 concurrent downloads, each checked by SHA-256, spread over both engines by the fanout program,
/// which must agree with the stack's own flow hash (a disagreement shows as hand-overs of TCP segments).
/// </summary>
[Collection("RealLinks")]
public sealed class ShardedInteropTests(ITestOutputHelper output)
{
    [RootTheory]
    [InlineData(0.0)]
    [InlineData(0.01)]
    public async Task Hundred_concurrent_downloads_over_two_engines(double loss)
    {
        await using var rig = RealLinkRig.Start(RealLinkKind.AfPacket, output, engines: 2);
        if (loss > 0)
        {
            rig.Net.AddLoss(loss);
        }

        const int count = 100;
        const long size = 100_000;
        var pattern = Path.Combine(rig.Directory, "p#1");
        var result = rig.Curl(120, "--parallel", "--parallel-immediate", "--parallel-max", $"{count}", "-o", pattern, RealLinkRig.Url($"/bytes/{size}?n=[1-{count}]"));
        Assert.True(result.ExitCode == 0, $"curl --parallel: {result}");
        var expected = TinyHttpServer.ExpectedSha256(size);
        for (var i = 1; i <= count; i++)
        {
            Assert.Equal(expected, RealLinkRig.Sha256OfFile(Path.Combine(rig.Directory, $"p{i}")));
        }

        var perShard = rig.Http.AcceptedPerShard;
        var shards = rig.Stack.Shards;
        output.WriteLine($"{loss:P0} loss: connections per engine {perShard[0]}, {perShard[1]}; hand-overs {shards[0].HandedOver}, {shards[1].HandedOver}; drops {shards[0].HandoverDrops + shards[1].HandoverDrops}");
        Assert.Equal(count, perShard[0] + perShard[1]);
        Assert.True(perShard[0] > 0 && perShard[1] > 0, $"connections per engine {perShard[0]}, {perShard[1]}");

        // Shard 1 hands nothing over: only shard 0 gets frames the fanout program does not hash (ARP, ICMP), and every TCP
        // segment reaches the shard the stack's hash names.
        Assert.Equal(0, shards[1].HandedOver);
        Assert.Equal(0, rig.Stack.ContainedExceptions);
    }
}
