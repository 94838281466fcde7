using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// TAP segmentation offload (IFF_VNET_HDR) against the kernel's TCP: 64 MiB down and 64 MiB up, byte-exact by sha256 and
/// judged by tshark and nstat, clean and under 1 % random loss each way. The device's own offloads stay on here, so the
/// kernel hands the stack TSO super-frames and checksums to finish while the stack writes super-segments: tshark on the
/// TAP device sees frames from the stack longer than the MTU, and the link counts what it sent and finished. With the
/// option off the same transfers work and no frame from the stack exceeds the MTU.
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkTapOffloadTests(ITestOutputHelper output)
{
    private const long Size = 64L << 20;

    [RootTheory]
    [InlineData(0.0)]
    [InlineData(0.01)]
    public async Task Super_segments_carry_64_MiB_each_way(double loss)
    {
        await using var rig = RealLinkRig.Start(RealLinkKind.Tap, output, offloadsOff: false);
        var tap = Assert.IsType<TapLink>(rig.Link);
        Assert.True(tap.MaxOffloadPayload > 60_000, $"offload payload {tap.MaxOffloadPayload}");
        if (loss > 0)
        {
            rig.Net.AddLoss(loss);
        }

        var verdict = rig.Judged(() => rig.DownloadAndUpload(Size, loss > 0 ? 120 : 60), maxSeconds: loss > 0 ? 300 : 150);

        // Sent: super-segments written whole, and seen whole by the kernel (one frame each on the TAP device).
        Assert.True(tap.SuperSegmentsTransmitted > 100, $"only {tap.SuperSegmentsTransmitted} super-segments sent");
        Assert.True(verdict.SuperFramesFromStack > 100, $"tshark saw only {verdict.SuperFramesFromStack} frames from the stack above the MTU");
        Assert.True(rig.Http.LastDownloadInfo is { } info && info.OffloadedSuperSegments > 100, "the sender built no super-segments");

        // Received: the kernel's TSO super-frames and NEEDS_CSUM frames, finished by the link and accepted by the stack.
        Assert.True(tap.SuperFramesReceived > 0, "the kernel handed over no super-frame");
        Assert.True(tap.ChecksumsCompleted > 0, "the kernel left no checksum to finish");
        Assert.Equal(0, tap.BadOffloadFrames);
        Assert.Equal(0, tap.OversizeReceivedFrames);
    }

    [RootFact]
    public async Task Without_offload_the_same_transfers_work_in_MTU_sized_frames()
    {
        await using var rig = RealLinkRig.Start(RealLinkKind.Tap, output, offloadsOff: false, configureTap: o => o.SegmentationOffload = false);
        var tap = Assert.IsType<TapLink>(rig.Link);
        Assert.Equal(0, tap.MaxOffloadPayload);

        var verdict = rig.Judged(() => rig.DownloadAndUpload(Size, 60), maxSeconds: 150);

        Assert.Equal(0, tap.SuperSegmentsTransmitted);
        Assert.Equal(0, verdict.SuperFramesFromStack);
        Assert.Equal(0, tap.SuperFramesReceived);
        Assert.Equal(0, tap.ChecksumsCompleted);
        Assert.Equal(0, tap.OversizeReceivedFrames);
    }
}
