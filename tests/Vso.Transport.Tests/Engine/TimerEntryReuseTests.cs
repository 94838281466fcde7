using Vso.Transport.Tcp;
using Vso.Transport.Tests.Traces;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Engine;

/// <summary>
/// Issue 12, connection setup: a closed connection's timer entry and half-open node serve the next connection instead
/// of new ones, and the closed connection keeps no hold on them (its timers can never fire for the next one).
/// </summary>
public sealed class TimerEntryReuseTests
{
    [Fact]
    public void A_closed_connections_timer_entry_and_half_open_node_go_to_the_next_connection()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        peer.Send(Syn, seq: 1000);
        var synAck = peer.Expect(SynAck, ack: 1001);
        var first = peer.Connection!;
        var entry = first.TimerEntry;
        var node = first.HalfOpenEntry;
        Assert.NotNull(entry);
        Assert.NotNull(node);
        Assert.Same(first, entry.Owner);

        // The handshake completes (the node goes back), then the peer resets the connection (the entry goes back).
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        Assert.Null(first.HalfOpenEntry);
        peer.Send(Rst, seq: 1001);
        Assert.Equal(TcpState.Closed, first.State);
        Assert.Null(first.TimerEntry);
        Assert.False(entry.IsArmed);

        peer.Port = 40001;
        peer.Send(Syn, seq: 5000);
        peer.Expect(SynAck, ack: 5001);
        var second = peer.Stack.Core.Tcp.Connections.Single(c => c.Id.RemotePort == 40001);
        Assert.Same(entry, second.TimerEntry);
        Assert.Same(second, entry.Owner);
        Assert.Same(node, second.HalfOpenEntry);
        Assert.Same(second, node.Value);

        // The second's SYN-ACK is retransmitted on its own schedule; the first stays silent and closed.
        peer.Expect(SynAck, ack: 5001, within: TimeSpan.FromSeconds(2));
        Assert.Equal(TcpState.Closed, first.State);
    }
}
