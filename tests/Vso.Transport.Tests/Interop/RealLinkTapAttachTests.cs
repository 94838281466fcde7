using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// TapLink attaching to a TAP device that exists before it (made with `ip tuntap add dev NAME mode tap`, persistent,
/// kernel side addressed and up): the link must attach without creating or configuring anything, and the kernel's
/// TCP must reach the stack through it. The device lives in the rig's namespace and goes with it, also on failure.
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkTapAttachTests(ITestOutputHelper output)
{
    private const long MiB = 1 << 20;

    [RootFact]
    public async Task Attaches_to_an_existing_persistent_TAP_device_and_serves_downloads()
    {
        await using var rig = RealLinkRig.Start(RealLinkKind.Tap, output, attachToExistingTap: true);
        var tap = Assert.IsType<TapLink>(rig.Link);
        Assert.False(tap.Created);

        rig.Judged(() =>
        {
            var small = rig.Download(1024, maxSeconds: 30);
            Assert.Equal(1024, small.Length);
            Assert.Equal(TinyHttpServer.ExpectedSha256(1024), small.Sha256);

            var big = rig.Download(64 * MiB, maxSeconds: 60);
            Assert.Equal(64 * MiB, big.Length);
            Assert.Equal(TinyHttpServer.ExpectedSha256(64 * MiB), big.Sha256);
            output.WriteLine($"attached TAP: 1 KiB in {small.Seconds * 1000:F0} ms, 64 MiB in {big.Seconds:F2} s ({64 / big.Seconds:F0} MiB/s)");
        });

        // It is still the persistent device made before the link, not one the link made (which would not persist).
        var show = NetnsHarness.CheckIn(rig.Net.Client, "ip", "-d", "link", "show", NetnsHarness.TapDevice);
        Assert.Contains("tun type tap", show);
        Assert.Contains("persist on", show);
    }
}
