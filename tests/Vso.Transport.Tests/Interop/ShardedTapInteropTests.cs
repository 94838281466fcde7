using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// A stack of two engines on a two-queue TAP device it creates itself (<c>VsoStackOptions.Engines = 2</c> with
/// <see cref="TapLinkOptions"/>: queue k for engine k, <see cref="TapSteeringProgram"/> attached) against the kernel's
/// curl: 100 concurrent downloads, each checked by SHA-256, spread over both engines by the steering program, which must
/// agree with the stack's own flow hash. A disagreement shows as TCP segments handed from one shard to the other.
/// </summary>
[Collection("RealLinks")]
public sealed class ShardedTapInteropTests(ITestOutputHelper output)
{
    private const int Count = 100;
    private const long Size = 100_000;

    /// <param name="loss">Loss of the stack's own frames, on every shard's link (<see cref="VsoLinkOptions.Faults"/>).</param>
    [RootTheory]
    [InlineData(0.0)]
    [InlineData(0.01)]
    public async Task Hundred_concurrent_downloads_over_two_engines_on_a_multi_queue_TAP(double loss)
    {
        var faults = loss > 0 ? new FaultOptions { LossRate = loss, Seed = 13 } : null;
        await using var rig = RealLinkRig.Start(RealLinkKind.Tap, output, engines: 2, stackFaults: faults);
        var shards = rig.Stack.Shards;
        Assert.Equal(2, shards.Length);
        Assert.True(TapOf(shards[0].Link).Steering, "queue 0 did not attach the steering program");
        Assert.Contains("multi_queue", NetnsHarness.CheckIn(rig.Net.Client, "ip", "-d", "link", "show", NetnsHarness.TapDevice), StringComparison.Ordinal);

        Download(rig, "p");

        var perShard = rig.Http.AcceptedPerShard;
        var lost = shards.Sum(s => s.Link is FaultInjector f ? f.FramesDroppedRandom : 0);
        output.WriteLine($"{loss:P0} loss: connections per engine {perShard[0]}, {perShard[1]}; frames read per queue {TapOf(shards[0].Link).FramesReceived}, {TapOf(shards[1].Link).FramesReceived}; " +
            $"hand-overs {shards[0].HandedOver}, {shards[1].HandedOver} (misrouted {shards[0].Misrouted}, {shards[1].Misrouted}); drops {shards[0].HandoverDrops + shards[1].HandoverDrops}; " +
            $"stack frames lost {lost}");
        Assert.Equal(Count, perShard[0] + perShard[1]);
        Assert.True(perShard[0] > 0 && perShard[1] > 0, $"connections per engine {perShard[0]}, {perShard[1]}");
        Assert.True(TapOf(shards[1].Link).FramesReceived > Count, $"queue 1 read only {TapOf(shards[1].Link).FramesReceived} frames");
        if (loss > 0)
        {
            Assert.True(lost > 0, "the fault injector lost none of the stack's frames");
        }

        // Every TCP segment reached the queue of the shard that owns it: nothing misrouted on either shard. Shard 0 hands
        // over only the kernel's ARP frames (every shard keeps its own cache): a few, not one per segment.
        Assert.Equal(0, shards[0].Misrouted);
        Assert.Equal(0, shards[1].Misrouted);
        Assert.Equal(0, shards[1].HandedOver);
        Assert.True(shards[0].HandedOver <= 10, $"shard 0 handed over {shards[0].HandedOver} frames");
        Assert.Equal(0, shards[0].HandoverDrops + shards[1].HandoverDrops);
        Assert.Equal(0, rig.Stack.ContainedExceptions);
    }

    /// <summary>
    /// The steering program is what puts the kernel's segments on their owners' queues: detached, the kernel's own choice
    /// (tun_automq_select_queue: its flow hash, then the queue the stack last wrote the flow on) sends the first segment of
    /// about half the flows, the SYN, to the other shard, which hands it over; attached again, none.
    /// </summary>
    [RootFact]
    public async Task Without_the_steering_program_the_kernel_misroutes_segments_and_with_it_none()
    {
        await using var rig = RealLinkRig.Start(RealLinkKind.Tap, output, engines: 2);
        var shards = rig.Stack.Shards;
        var queue0 = TapOf(shards[0].Link);

        queue0.DetachSteering();
        Assert.False(queue0.Steering);
        Download(rig, "unsteered");
        var unsteered = shards[0].Misrouted + shards[1].Misrouted;
        output.WriteLine($"without steering: misrouted {shards[0].Misrouted}, {shards[1].Misrouted} of {Count} connections' segments");
        Assert.True(unsteered >= Count / 10, $"only {unsteered} segments misrouted without the steering program: the test shows nothing");

        queue0.AttachSteering(2);
        Assert.True(queue0.Steering);

        Download(rig, "steered");
        var steered = shards[0].Misrouted + shards[1].Misrouted - unsteered;
        output.WriteLine($"with steering: misrouted {steered}");
        Assert.Equal(0, steered);
        Assert.Equal(0, rig.Stack.ContainedExceptions);
    }

    /// <summary>
    /// Uploads with the TAP's offloads on: the kernel hands the stack TSO super-frames (one skb, up to 64 KiB, steered as
    /// one frame) and checksums to finish. Each still reaches its connection's shard, and every body arrives intact.
    /// </summary>
    [RootFact]
    public async Task Concurrent_uploads_as_the_kernels_super_frames_stay_on_their_shards()
    {
        const int uploads = 16;
        const int size = 4 << 20;
        await using var rig = RealLinkRig.Start(RealLinkKind.Tap, output, offloadsOff: false, engines: 2);
        var shards = rig.Stack.Shards;
        var file = Path.Combine(rig.Directory, "upload");
        var body = new byte[size];
        new Random(17).NextBytes(body);
        await File.WriteAllBytesAsync(file, body);
        var expected = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(body));

        var result = rig.Client(TimeSpan.FromSeconds(130), "bash", "-c",
            $"for i in $(seq 1 {uploads}); do curl --noproxy '*' -sS --fail --max-time 120 -T {file} -o {rig.Directory}/answer$i {RealLinkRig.Url("/upload")} & done; wait");
        Assert.True(result.ExitCode == 0, $"curl uploads: {result}");
        for (var i = 1; i <= uploads; i++)
        {
            Assert.Equal(expected, (await File.ReadAllTextAsync(Path.Combine(rig.Directory, $"answer{i}"))).Trim());
        }

        var queues = shards.Select(s => TapOf(s.Link)).ToArray();
        var perShard = rig.Http.AcceptedPerShard;
        output.WriteLine($"connections per engine {perShard[0]}, {perShard[1]}; super-frames per queue {queues[0].SuperFramesReceived}, {queues[1].SuperFramesReceived}; " +
            $"checksums finished {queues[0].ChecksumsCompleted + queues[1].ChecksumsCompleted}; misrouted {shards[0].Misrouted}, {shards[1].Misrouted}; hand-overs {shards[0].HandedOver}, {shards[1].HandedOver}");
        Assert.Equal(uploads, perShard[0] + perShard[1]);
        Assert.True(perShard[0] > 0 && perShard[1] > 0, $"connections per engine {perShard[0]}, {perShard[1]}");
        Assert.True(queues[0].SuperFramesReceived > 0 && queues[1].SuperFramesReceived > 0, "the kernel sent no TSO super-frames to one of the queues");
        Assert.Equal(0, queues[0].BadOffloadFrames + queues[1].BadOffloadFrames);
        Assert.Equal(0, shards[0].Misrouted);
        Assert.Equal(0, shards[1].Misrouted);
        Assert.Equal(0, shards[0].HandoverDrops + shards[1].HandoverDrops);
        Assert.Equal(0, rig.Stack.ContainedExceptions);
    }

    private static void Download(RealLinkRig rig, string prefix)
    {
        var pattern = Path.Combine(rig.Directory, $"{prefix}#1");
        var result = rig.Curl(120, "--parallel", "--parallel-immediate", "--parallel-max", $"{Count}", "-o", pattern, RealLinkRig.Url($"/bytes/{Size}?n=[1-{Count}]"));
        Assert.True(result.ExitCode == 0, $"curl --parallel: {result}");
        var expected = TinyHttpServer.ExpectedSha256(Size);
        for (var i = 1; i <= Count; i++)
        {
            Assert.Equal(expected, RealLinkRig.Sha256OfFile(Path.Combine(rig.Directory, $"{prefix}{i}")));
        }
    }

    private static TapLink TapOf(ILink link) => link switch
    {
        TapLink tap => tap,
        FaultInjector { Inner: TapLink tap } => tap,
        _ => throw new InvalidOperationException($"shard link is a {link.GetType().Name}"),
    };
}
