using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// AF_PACKET with the devices' offloads left on, as a NIC has them: the kernel client's TSO super-frames (NEEDS_CSUM,
/// CHECKSUM_PARTIAL across the veth) and GRO's merged frames (DATA_VALID) reach the socket with a virtio_net_hdr and are
/// taken whole, 64 MiB each way byte-exact by sha256. Without segmentation offload there is no header to read, and
/// such frames are dropped and counted, never crashing the engine.
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkAfPacketOffloadTests(ITestOutputHelper output)
{
    private const long Size = 64L << 20;

    [RootTheory]
    [InlineData(nameof(AfPacketReceiveRing.V2))]
    [InlineData(nameof(AfPacketReceiveRing.V3))]
    public async Task The_peers_TSO_super_frames_are_taken_whole(string ringName)
    {
        var ring = Enum.Parse<AfPacketReceiveRing>(ringName);
        await using var rig = RealLinkRig.Start(RealLinkKind.AfPacket, output, offloadsOff: false, ring: ring);
        var link = Assert.IsType<AfPacketLink>(rig.Link);

        rig.DownloadAndUpload(Size, 60);

        Assert.True(link.SuperFramesReceived > 100, $"only {link.SuperFramesReceived} super-frames received");
        Assert.True(link.ChecksumsCompleted >= link.SuperFramesReceived, $"{link.ChecksumsCompleted} checksums finished for {link.SuperFramesReceived} super-frames");

        // A 2 KiB TPACKET_V2 slot cannot hold a super-frame: the socket's queue holds it whole. V3's blocks hold it.
        if (ring == AfPacketReceiveRing.V2)
        {
            Assert.True(link.CopiedFrames > 100, $"only {link.CopiedFrames} frames read from the socket's queue");
        }
        else
        {
            Assert.Equal(0, link.CopiedFrames);
        }

        Assert.Equal(0, link.BadOffloadFrames);
        Assert.Equal(0, link.OversizeReceivedFrames);
        Assert.Equal(0, link.ChecksumNotReadyFrames);
        Assert.Equal(0, rig.Stack.ContainedExceptions);
    }

    [RootFact]
    public async Task GRO_merged_frames_get_their_checksum_written_anew()
    {
        // The client sends MTU-sized frames with whole checksums; GRO on the stack's veth end merges them and marks
        // them checked (DATA_VALID), leaving the first segment's checksum in the merged frame.
        await using var rig = RealLinkRig.Start(RealLinkKind.AfPacket, output);
        NetnsHarness.SetFeatures(rig.Net.Server, NetnsHarness.ServerDevice, "gro", "on");
        var link = Assert.IsType<AfPacketLink>(rig.Link);

        var up = rig.Upload(Size, 60);
        Assert.Equal(up.Expected, up.Answer);

        Assert.True(link.SuperFramesReceived > 100, $"only {link.SuperFramesReceived} merged frames received");
        Assert.True(link.ChecksumsCompleted >= link.SuperFramesReceived, $"{link.ChecksumsCompleted} checksums written for {link.SuperFramesReceived} merged frames");
        Assert.Equal(0, link.BadOffloadFrames);
        Assert.Equal(0, link.OversizeReceivedFrames);
    }

    [RootFact]
    public async Task Without_segmentation_offload_such_frames_are_dropped_counted_and_never_crash_the_engine()
    {
        await using var rig = RealLinkRig.Start(RealLinkKind.AfPacket, output, offloadsOff: false, afPacketOffload: false);
        var link = Assert.IsType<AfPacketLink>(rig.Link);
        _ = rig.Curl(3, "-T", "/proc/self/exe", RealLinkRig.Url("/upload"));
        output.WriteLine($"checksum not ready {link.ChecksumNotReadyFrames}, oversize {link.OversizeReceivedFrames}, handed {link.FramesReceived}");
        Assert.True(link.ChecksumNotReadyFrames + link.OversizeReceivedFrames > 0, "with offloads on, the kernel hands over frames with unfinished checksums");
        Assert.Equal(0, link.SuperFramesReceived);
        Assert.Equal(0, rig.Stack.ContainedExceptions);
    }
}
