using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>The listen backlog (RFC 9293 §3.10.1): half-open plus not-yet-accepted connections are bounded.</summary>
public sealed class ListenTraces
{
    [Fact]
    public void SYNs_beyond_the_backlog_are_dropped_until_a_connection_is_accepted()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80, backlog: 2);

        peer.Port = 40001;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 1001);
        peer.Port = 40002;
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        var second = peer.Expect(SynAck, ack: 2001);

        // Two half-open connections fill a backlog of 2: the third SYN gets no answer (the client retries).
        peer.Port = 40003;
        peer.Send(Syn, seq: 3000, options: RawPeer.SynOptions());
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));

        // Completing a handshake does not free room (the connection waits to be accepted) ...
        peer.Port = 40002;
        peer.Send(Ack, seq: 2001, ack: second.Seq + 1);
        peer.Port = 40003;
        peer.Send(Syn, seq: 3000, options: RawPeer.SynOptions());
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));

        // ... accepting it does.
        Assert.True(listener.TryAccept(out var accepted));
        Assert.Equal(TcpState.Established, accepted.GetInfo().State);
        peer.Send(Syn, seq: 3000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 3001);
    }
}
