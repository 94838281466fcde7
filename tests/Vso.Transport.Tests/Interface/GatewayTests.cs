using Vso.Transport.Tcp;
using Vso.Transport.Tests.Traces;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Interface;

/// <summary>Off-link peers are reached through the gateway, and a connection waiting on the gateway's ARP moves as soon as it resolves.</summary>
public sealed class GatewayTests
{
    [Fact]
    public void A_connection_to_an_off_link_peer_sends_its_SYN_as_soon_as_the_gateway_resolves()
    {
        using var peer = new RawPeer(asGateway: true);
        var start = peer.Now;
        var connecting = peer.Stack.ConnectAsync(peer.Remote, peer.Port);

        // The SYN cannot leave until the gateway's hardware address is known; the peer answers the ARP request at
        // once, so the SYN must follow at once, not when the retransmission timer (1 s) resends it.
        var syn = peer.Expect(Syn, ack: 0, within: TimeSpan.FromSeconds(2));
        Assert.Equal(start, syn.At);
        peer.StackPort = syn.SourcePort;
        peer.Send(SynAck, seq: 7000, ack: syn.Seq + 1, options: RawPeer.SynOptions());
        peer.Expect(Ack, seq: syn.Seq + 1, ack: 7001, within: TimeSpan.Zero);
        var connection = peer.Await(connecting, TimeSpan.Zero);
        Assert.Equal(TcpState.Established, connection.GetInfo().State);
        Assert.Equal(0, connection.GetInfo().RetransmittedSegments);
    }
}
