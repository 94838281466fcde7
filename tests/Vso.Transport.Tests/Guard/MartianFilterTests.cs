using Vso.Transport.Interface;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Guard;

/// <summary>RFC 1122 §3.2.1.3 and §4.2.3.10, RFC 1812 §5.3.7: addresses that cannot be genuine on our link.</summary>
public sealed class MartianFilterTests
{
    private static readonly Ipv4Address Own = Ipv4Address.Parse("198.18.0.2");
    private static readonly Ipv4Address Peer = Ipv4Address.Parse("198.18.0.1");
    private static readonly MartianFilter Filter = new(Own, 24);

    private static Ipv4Address A(string text) => Ipv4Address.Parse(text);

    [Theory]
    [InlineData("198.18.0.1", nameof(MartianReason.None))]
    [InlineData("203.0.113.9", nameof(MartianReason.None))] // off-subnet is not martian, only unroutable without a gateway
    [InlineData("0.0.0.0", nameof(MartianReason.ThisNetwork))]
    [InlineData("0.1.2.3", nameof(MartianReason.ThisNetwork))]
    [InlineData("127.0.0.1", nameof(MartianReason.Loopback))]
    [InlineData("127.255.255.254", nameof(MartianReason.Loopback))]
    [InlineData("224.0.0.1", nameof(MartianReason.Multicast))]
    [InlineData("239.255.255.255", nameof(MartianReason.Multicast))]
    [InlineData("240.0.0.1", nameof(MartianReason.Reserved))]
    [InlineData("255.255.255.254", nameof(MartianReason.Reserved))]
    [InlineData("255.255.255.255", nameof(MartianReason.LimitedBroadcast))]
    [InlineData("198.18.0.255", nameof(MartianReason.DirectedBroadcast))]
    [InlineData("198.18.0.0", nameof(MartianReason.NetworkAddress))]
    [InlineData("198.18.0.2", nameof(MartianReason.OwnAddress))]
    public void Sources_are_classified(string source, string reason)
    {
        var expected = Enum.Parse<MartianReason>(reason);
        Assert.Equal(expected, Filter.ClassifySource(A(source)));
        Assert.Equal(expected, Filter.Classify(A(source), Own));
    }

    [Theory]
    [InlineData("198.18.0.2", nameof(MartianReason.None))]
    [InlineData("0.0.0.0", nameof(MartianReason.ThisNetwork))]
    [InlineData("127.0.0.1", nameof(MartianReason.Loopback))]
    [InlineData("250.1.2.3", nameof(MartianReason.Reserved))]
    [InlineData("255.255.255.255", nameof(MartianReason.None))] // an ICMP echo to broadcast is the protocol's choice
    [InlineData("198.18.0.255", nameof(MartianReason.None))]
    [InlineData("224.0.0.1", nameof(MartianReason.None))]
    public void Destinations_are_classified(string destination, string reason) =>
        Assert.Equal(Enum.Parse<MartianReason>(reason), Filter.Classify(Peer, A(destination)));

    [Fact]
    public void The_source_reason_wins_over_the_destination_reason() =>
        Assert.Equal(MartianReason.Multicast, Filter.Classify(A("224.0.0.5"), A("127.0.0.1")));

    [Theory]
    [InlineData("255.255.255.255", nameof(MartianReason.LimitedBroadcast))]
    [InlineData("198.18.0.255", nameof(MartianReason.DirectedBroadcast))]
    [InlineData("198.18.0.0", nameof(MartianReason.NetworkAddress))]
    [InlineData("224.0.0.1", nameof(MartianReason.Multicast))]
    [InlineData("198.18.0.2", nameof(MartianReason.None))]
    public void Tcp_is_unicast_only(string destination, string reason) =>
        Assert.Equal(Enum.Parse<MartianReason>(reason), Filter.ClassifyTcp(Peer, 40000, A(destination), 80));

    [Fact]
    public void A_land_segment_is_named_as_such()
    {
        Assert.Equal(MartianReason.Land, Filter.ClassifyTcp(Own, 80, Own, 80));
        Assert.Equal(MartianReason.OwnAddress, Filter.ClassifyTcp(Own, 81, Own, 80));
        Assert.Equal(MartianReason.None, Filter.ClassifyTcp(Peer, 80, Own, 80));
    }

    [Fact]
    public void Point_to_point_and_host_subnets_have_no_broadcast()
    {
        // RFC 3021: in a /31 both addresses are hosts.
        var p2p = new MartianFilter(A("10.0.0.0"), 31);
        Assert.False(p2p.HasBroadcast);
        Assert.Equal(MartianReason.None, p2p.ClassifySource(A("10.0.0.1")));
        Assert.Equal(MartianReason.None, p2p.ClassifyTcp(A("10.0.0.1"), 1, A("10.0.0.0"), 2));
        Assert.Equal(MartianReason.OwnAddress, p2p.ClassifySource(A("10.0.0.0")));

        var host = new MartianFilter(A("10.0.0.7"), 32);
        Assert.Equal(MartianReason.None, host.ClassifySource(A("10.0.0.8")));
    }

    [Fact]
    public void Network_and_broadcast_addresses_follow_the_prefix()
    {
        var filter = new MartianFilter(A("10.1.2.3"), 20);
        Assert.Equal(A("10.1.0.0"), filter.NetworkAddress);
        Assert.Equal(A("10.1.15.255"), filter.DirectedBroadcast);
        Assert.Equal(MartianReason.DirectedBroadcast, filter.ClassifySource(A("10.1.15.255")));
        Assert.Equal(MartianReason.None, filter.ClassifySource(A("10.1.2.255")));
    }

    [Fact]
    public void On_link_is_the_own_subnet()
    {
        Assert.True(Filter.IsOnLink(Peer));
        Assert.True(Filter.IsOnLink(A("198.18.0.254")));
        Assert.False(Filter.IsOnLink(A("198.18.1.1")));
        Assert.False(Filter.IsOnLink(A("203.0.113.9")));
        Assert.True(new MartianFilter(Own, 0).IsOnLink(A("203.0.113.9")));
        Assert.False(new MartianFilter(Own, 32).IsOnLink(Peer));
    }

    [Fact]
    public void A_prefix_outside_0_to_32_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MartianFilter(Own, 33));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MartianFilter(Own, -1));
    }
}
