using Vso.Transport.Links;

namespace Vso.Transport.Tests.Links;

public sealed class AfPacketRingTests
{
    [Theory]
    [InlineData(1500, 2048)]
    [InlineData(1968, 2048)] // 80 bytes of headroom + 1968 = 2048 exactly
    [InlineData(1969, 4096)]
    [InlineData(9000, 16384)]
    public void V2_frame_slots_hold_the_headroom_and_an_MTU_frame(int mtu, int expected) =>
        Assert.Equal(expected, TPacketV2Ring.FrameSizeFor(mtu));

    [Fact]
    public void The_default_ring_is_V2_and_an_unknown_one_is_refused()
    {
        var options = new AfPacketLinkOptions { InterfaceName = "veth0" };
        Assert.Equal(AfPacketReceiveRing.V2, options.ReceiveRing);
        options.Validate();
        options.ReceiveRing = (AfPacketReceiveRing)7;
        var error = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains("ReceiveRing", error.Message, StringComparison.Ordinal);
    }
}
