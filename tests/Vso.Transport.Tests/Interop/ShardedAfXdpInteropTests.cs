using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// A stack of two engines on AF_XDP (<c>Vso:Engines</c> = 2): engine k has its own socket, rings and UMEM frames on
/// receive queue k of a two-queue veth, under one XDP program and XSKMAP. The veth puts a frame on the receive queue the
/// client's kernel chose as its transmit queue (its own per-socket hash, not the stack's), and an xsk receives only from
/// its own queue, so about half the segments reach the other engine's queue and are handed over by the shard router.
/// 100 concurrent curl downloads, each checked by SHA-256, clean and with 1% of the stack's frames lost by its
/// FaultInjector (one per engine, seeded).
/// </summary>
[Collection("RealLinks")]
public sealed class ShardedAfXdpInteropTests(ITestOutputHelper output)
{
    [RootTheory]
    [InlineData(0.0)]
    [InlineData(0.01)]
    public async Task Hundred_concurrent_downloads_over_two_engines_on_AF_XDP(double loss)
    {
        var faults = loss > 0 ? new FaultOptions { Seed = 13, LossRate = loss } : null;
        await using var rig = RealLinkRig.Start(RealLinkKind.AfXdp, output, xdpOnPool: true, engines: 2, stackFaults: faults);
        var shards = rig.Stack.Shards;
        var links = new AfXdpLink[shards.Length];
        for (var i = 0; i < links.Length; i++)
        {
            links[i] = Unwrap(shards[i].Link);
            Assert.Equal((i, 1), (links[i].Queue, links[i].QueueCount));
        }

        // vso.shard.handovers, as a metrics pipeline sees it.
        long counted = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "vso.shard.handovers" && instrument.Meter == rig.Stack.Meter)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref counted, value));
        listener.Start();

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
        long received = 0, handedOver = 0, drops = 0, lost = 0;
        for (var i = 0; i < shards.Length; i++)
        {
            received += links[i].FramesReceived;
            handedOver += shards[i].HandedOver;
            drops += shards[i].HandoverDrops;
            lost += shards[i].Link is FaultInjector injector ? injector.FramesDroppedRandom : 0;
            output.WriteLine($"engine {i}: {perShard[i]} connections, queue {links[i].Queue} received {links[i].FramesReceived} frames, handed over {shards[i].HandedOver}, " +
                $"transmitted {links[i].FramesTransmitted} ({links[i].FramesSentInPlace} in place), transmit errors {links[i].TransmitErrors}");
        }

        var fraction = (double)handedOver / received;
        output.WriteLine($"{loss:P0} loss ({lost} frames lost): hand-overs {handedOver} of {received} frames received = {fraction:P1}; hand-over drops {drops}");
        Assert.Equal(count, perShard[0] + perShard[1]);
        Assert.True(perShard[0] > 0 && perShard[1] > 0, $"connections per engine {perShard[0]}, {perShard[1]}");

        // Both queues carry frames, both engines send from their own socket, and the kernel's choice of queue disagrees with
        // the stack's hash for a share of the flows: those frames cross over.
        Assert.True(links[0].FramesReceived > 0 && links[1].FramesReceived > 0, "each queue received frames");
        Assert.True(links[0].FramesTransmitted > 0 && links[1].FramesTransmitted > 0, "each engine sent from its own socket");
        Assert.True(shards[0].HandedOver > 0 && shards[1].HandedOver > 0, "misrouted frames were handed over both ways");
        Assert.Equal(handedOver, Interlocked.Read(ref counted));
        Assert.Equal(0, rig.Stack.ContainedExceptions);
        if (loss > 0)
        {
            Assert.True(lost > 0, "the fault injector lost frames");
        }
    }

    private static AfXdpLink Unwrap(ILink link) => link switch
    {
        AfXdpLink xdp => xdp,
        FaultInjector injector => Unwrap(injector.Inner),
        _ => throw new InvalidOperationException($"not an AF_XDP link: {link.GetType().Name}"),
    };
}
