using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// The listen backlog (RFC 9293 §3.10.1) bounds the accept queue: established connections not yet accepted. Half-open
/// ones have a queue of their own (TcpSettings.MaxHalfOpen, see SynCookieTraces), as in Linux.
/// </summary>
public sealed class ListenTraces
{
    [Fact]
    public void SYNs_and_completing_ACKs_beyond_the_accept_queue_are_dropped_until_a_connection_is_accepted()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Never);
        using var listener = peer.Stack.Listen(80, backlog: 2);

        // Half-open connections do not count against the backlog: three handshakes start.
        peer.Port = 40001;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var first = peer.Expect(SynAck, ack: 1001);
        peer.Port = 40002;
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        var second = peer.Expect(SynAck, ack: 2001);
        peer.Port = 40003;
        peer.Send(Syn, seq: 3000, options: RawPeer.SynOptions());
        var third = peer.Expect(SynAck, ack: 3001);

        // Two complete and fill the accept queue of 2 ...
        peer.Port = 40001;
        peer.Send(Ack, seq: 1001, ack: first.Seq + 1);
        peer.Port = 40002;
        peer.Send(Ack, seq: 2001, ack: second.Seq + 1);
        peer.ExpectNothing();

        // ... so the third's ACK is dropped (it stays half-open, its peer retries), and a new SYN gets no answer.
        peer.Port = 40003;
        peer.Send(Ack, seq: 3001, ack: third.Seq + 1);
        peer.ExpectNothing();
        Assert.Contains(peer.Stack.Core.Tcp.Connections, c => c.Id.RemotePort == 40003 && c.State == TcpState.SynReceived);
        peer.Port = 40004;
        peer.Send(Syn, seq: 4000, options: RawPeer.SynOptions());
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));

        // Accepting one makes room: the third's retransmitted ACK completes it, and new SYNs are answered again.
        Assert.True(listener.TryAccept(out var accepted));
        Assert.Equal(TcpState.Established, accepted.GetInfo().State);
        peer.Port = 40003;
        peer.Send(Ack, seq: 3001, ack: third.Seq + 1);
        peer.ExpectNothing();
        Assert.Contains(peer.Stack.Core.Tcp.Connections, c => c.Id.RemotePort == 40003 && c.State == TcpState.Established);
        Assert.True(listener.TryAccept(out _));
        peer.Port = 40004;
        peer.Send(Syn, seq: 4000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 4001);
    }

    /// <summary>
    /// A draining listener (VsoEndpointListener.StopAccepting) keeps its port but answers nothing: a SYN gets neither the
    /// SYN-ACK of RFC 9293 §3.10.7.2 nor the RST of a closed port (§3.10.7.1), as if it were lost, so a balancer's retry
    /// goes to another server. A handshake already under way is reset when it completes (there is nobody to accept it).
    /// Once unbound, the closed port answers with RST again.
    /// </summary>
    [Fact]
    public void A_silenced_listener_leaves_SYNs_unanswered_until_it_is_unbound()
    {
        using var peer = new RawPeer();
        var handedOver = 0;
        var listener = peer.Stack.ListenEndpoints(80, null, _ =>
        {
            handedOver++;
            return true;
        });

        peer.Port = 40001;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, ack: 1001);
        listener.StopAccepting();

        // The handshake under way completes into a reset, never into the application's hands.
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        peer.Expect(RstAck, seq: synAck.Seq + 1);

        // New SYNs: silence, through what would be two SYN retransmissions of the peer.
        peer.Port = 40002;
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        peer.ExpectNothing(TimeSpan.FromSeconds(1));
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        peer.ExpectNothing(TimeSpan.FromSeconds(2));
        Assert.Equal(0, handedOver);

        listener.Dispose();
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        peer.Expect(RstAck, seq: 0, ack: 2001);
    }
}
