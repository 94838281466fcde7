using Vso.Transport.Links;
using Xunit.Abstractions;
using Vso.Transport.Native;

namespace Vso.Transport.Tests.Interop;

/// <summary>Opening a real link fails with a message that says what to do.</summary>
[Collection("RealLinks")]
public sealed class RealLinkErrorTests
{
    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    public unsafe void Missing_capability_is_named_with_how_to_grant_it(RealLinkKind kind)
    {
        using var net = new NetnsHarness(RealLinkKind.AfPacket);
        var error = NetnsHarness.RunIn(net.Server, () =>
        {
            // Capabilities are per thread: drop CAP_NET_RAW and CAP_NET_ADMIN from this thread's effective set only.
            var header = stackalloc uint[2] { LinuxNative.LINUX_CAPABILITY_VERSION_3, 0 };
            var data = stackalloc uint[6];
            Assert.Equal(0, LinuxNative.capget(header, data));
            data[0] &= ~((1u << LinuxNative.CAP_NET_RAW) | (1u << LinuxNative.CAP_NET_ADMIN));
            Assert.Equal(0, LinuxNative.capset(header, data));
            return Record.Exception(() => Open(kind, kind == RealLinkKind.AfPacket ? NetnsHarness.ServerDevice : "vsonew0", create: true));
        });
        var link = Assert.IsType<LinkException>(error);
        Assert.Contains(kind == RealLinkKind.AfPacket ? "CAP_NET_RAW" : "CAP_NET_ADMIN", link.Message, StringComparison.Ordinal);
        Assert.Contains("setcap cap_net_raw,cap_net_admin+ep", link.Message, StringComparison.Ordinal);
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    [InlineData(RealLinkKind.Tap)]
    public void Missing_interface_is_named(RealLinkKind kind)
    {
        using var net = new NetnsHarness(RealLinkKind.AfPacket);
        var error = NetnsHarness.RunIn(net.Server, () => Record.Exception(() => Open(kind, "vsonothere0", create: false)));
        var link = Assert.IsType<LinkException>(error);
        Assert.Contains("'vsonothere0' does not exist", link.Message, StringComparison.Ordinal);
    }

    [RootTheory]
    [InlineData(RealLinkKind.AfPacket)]
    public void Interface_that_is_down_is_named(RealLinkKind kind)
    {
        using var net = new NetnsHarness(RealLinkKind.AfPacket);
        Shell.Check("ip", "-n", net.Server, "link", "set", NetnsHarness.ServerDevice, "down");
        var error = NetnsHarness.RunIn(net.Server, () => Record.Exception(() => Open(kind, NetnsHarness.ServerDevice, create: false)));
        var link = Assert.IsType<LinkException>(error);
        Assert.Contains($"'{NetnsHarness.ServerDevice}' is down", link.Message, StringComparison.Ordinal);
        Assert.Contains($"ip link set {NetnsHarness.ServerDevice} up", link.Message, StringComparison.Ordinal);
    }

    private static object? Open(RealLinkKind kind, string device, bool create)
    {
        using ILink link = kind == RealLinkKind.AfPacket
            ? new AfPacketLink(new AfPacketLinkOptions { InterfaceName = device })
            : new TapLink(new TapLinkOptions { Name = device, Create = create });
        return null;
    }
}
