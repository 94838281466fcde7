using Vso.Transport.Interface;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// Input filters of RFC 1122 §3.2.1.3 and RFC 1812 §5.3.7 (martian sources), the land attack, and sources we have
/// no route back to: each is dropped before it creates state, an ARP request or an ARP cache slot, and counted by reason.
/// </summary>
public sealed class MartianTraces
{
    private static readonly Ipv4Address Stack = RawPeer.StackAddress;

    [Theory]
    [InlineData("127.0.0.1", nameof(MartianReason.Loopback))]        // RFC 1122 §3.2.1.3 (g)
    [InlineData("0.0.0.0", nameof(MartianReason.ThisNetwork))]       // RFC 1122 §3.2.1.3 (a)
    [InlineData("0.1.2.3", nameof(MartianReason.ThisNetwork))]       // RFC 1122 §3.2.1.3 (b)
    [InlineData("224.0.0.1", nameof(MartianReason.Multicast))]       // RFC 1122 §3.2.1.3, RFC 1812 §5.3.7
    [InlineData("240.0.0.1", nameof(MartianReason.Reserved))]        // RFC 1812 §5.3.7 (class E)
    [InlineData("255.255.255.255", nameof(MartianReason.LimitedBroadcast))] // RFC 1122 §3.2.1.3 (c)
    [InlineData("198.18.0.255", nameof(MartianReason.DirectedBroadcast))]   // RFC 1122 §3.2.1.3 (d)
    [InlineData("198.18.0.0", nameof(MartianReason.NetworkAddress))]        // RFC 1122 §3.3.6, the old broadcast form
    [InlineData("198.18.0.2", nameof(MartianReason.OwnAddress))]            // our own address, from another port
    [InlineData("203.0.113.5", nameof(MartianReason.NoRoute))]              // off-subnet without a gateway
    public void SYN_from_a_martian_source_is_dropped_and_counted_with_no_reply_no_state_and_no_ARP(string source, string reasonName)
    {
        var reason = Enum.Parse<MartianReason>(reasonName);
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        var arpEntries = peer.Interface().ArpEntries;

        peer.SendTcp(Ipv4Address.Parse(source), 40000, Stack, 80, Syn, seq: 1000);
        peer.Advance(TimeSpan.FromSeconds(5));

        Assert.Equal(1, peer.Interface().Martians.Dropped(reason));
        Assert.Equal(1, peer.Interface().Martians.Total);
        Assert.Equal(0, peer.Stack.Core.Tcp.ConnectionCount);
        Assert.Equal(arpEntries, peer.Interface().ArpEntries);
        Assert.Equal(0, peer.Pending);
        Assert.Equal(0, peer.Stack.Core.ContainedExceptions);
    }

    [Fact]
    public void Land_SYN_from_our_own_address_and_port_to_themselves_is_dropped()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);

        peer.SendTcp(Stack, 80, Stack, 80, Syn, seq: 1000);
        peer.Advance(TimeSpan.FromSeconds(5));

        Assert.Equal(1, peer.Interface().Martians.Dropped(MartianReason.Land));
        Assert.Equal(0, peer.Stack.Core.Tcp.ConnectionCount);
        Assert.Equal(0, peer.Pending);
    }

    [Fact]
    public void Off_subnet_SYN_without_a_gateway_gets_no_ARP_request_and_no_cache_slot()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        var arpEntries = peer.Interface().ArpEntries;

        for (var i = 0; i < 100; i++)
        {
            peer.SendTcp(new Ipv4Address(0xCB00_7100u + (uint)i), (ushort)(30000 + i), Stack, 80, Syn, seq: 1000);
        }

        peer.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(100, peer.Interface().Martians.Dropped(MartianReason.NoRoute));
        Assert.Equal(arpEntries, peer.Interface().ArpEntries);
        Assert.Equal(0, peer.Stack.Core.Tcp.ConnectionCount);
    }

    [Fact]
    public void With_a_gateway_an_off_subnet_SYN_is_answered()
    {
        using var peer = new RawPeer(asGateway: true);
        using var listener = peer.Stack.Listen(80);

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 1001, within: TimeSpan.FromSeconds(2));
        Assert.Equal(0, peer.Interface().Martians.Total);
    }

    [Theory]
    [InlineData("127.0.0.1", nameof(MartianReason.Loopback))]
    [InlineData("0.0.0.0", nameof(MartianReason.ThisNetwork))]   // an RFC 5227 probe: no conflict detection here, nothing to learn
    [InlineData("224.0.0.1", nameof(MartianReason.Multicast))]
    [InlineData("255.255.255.255", nameof(MartianReason.LimitedBroadcast))]
    [InlineData("198.18.0.255", nameof(MartianReason.DirectedBroadcast))]
    [InlineData("198.18.0.2", nameof(MartianReason.OwnAddress))]
    [InlineData("203.0.113.5", nameof(MartianReason.NoRoute))]
    public void ARP_from_a_martian_sender_is_ignored_without_a_cache_slot_or_a_reply(string sender, string reasonName)
    {
        var reason = Enum.Parse<MartianReason>(reasonName);
        using var peer = new RawPeer();
        var arpEntries = peer.Interface().ArpEntries;

        peer.SendArp(ArpOperation.Request, Ipv4Address.Parse(sender), Stack);
        peer.SendArp(ArpOperation.Reply, Ipv4Address.Parse(sender), Stack);

        Assert.Equal(2, peer.Interface().Martians.Dropped(reason));
        Assert.Equal(arpEntries, peer.Interface().ArpEntries);
    }

    [Fact]
    public void ARP_from_an_on_link_sender_is_still_learned()
    {
        using var peer = new RawPeer();
        var arpEntries = peer.Interface().ArpEntries;
        peer.SendArp(ArpOperation.Request, Ipv4Address.Parse("198.18.0.77"), Stack);
        Assert.Equal(arpEntries + 1, peer.Interface().ArpEntries);
        Assert.Equal(0, peer.Interface().Martians.Total);
    }

    [Fact]
    public void Connect_to_an_off_subnet_address_without_a_gateway_fails_at_once_with_no_ARP_request()
    {
        using var peer = new RawPeer();
        var arpEntries = peer.Interface().ArpEntries;
        var connecting = peer.Stack.ConnectAsync(Ipv4Address.Parse("203.0.113.9"), 80);
        peer.Pump();
        Assert.Equal(arpEntries, peer.Interface().ArpEntries);
        Assert.True(connecting.IsFaulted);
        var error = Assert.IsType<InvalidOperationException>(connecting.Exception!.InnerException);
        Assert.Contains("No route to 203.0.113.9", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, peer.Stack.Core.Tcp.ConnectionCount);
    }
}
