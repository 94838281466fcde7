using System.Net;
using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// Issue 11 item 10: a connect that can be cancelled, bind-before-connect, listening on port 0, and shutdown of the
/// receiving half.
/// </summary>
public sealed class ConnectAndBindTraces
{
    private const uint R = 1001;

    private static IPEndPoint PeerEndPoint(RawPeer peer) => new(peer.Remote.ToIPAddress(), peer.Port);

    [Fact]
    public void Cancelling_a_connect_in_SYN_SENT_closes_it_and_a_late_SYN_ACK_meets_RST()
    {
        // RFC 9293 §3.10.5: ABORT in SYN-SENT deletes the TCB without a segment; §3.10.7.1: a SYN-ACK for no connection
        // then gets <SEQ=SEG.ACK><CTL=RST>, which is what the peer needs to forget its half-open end.
        using var peer = new RawPeer();
        using var cancel = new CancellationTokenSource();
        var connecting = peer.Stack.ConnectAsync(PeerEndPoint(peer), null, null, cancel.Token);
        var syn = peer.Expect(Syn, ack: 0);
        cancel.Cancel();
        peer.Await((Task)connecting, TimeSpan.Zero);
        Assert.True(connecting.IsCanceled);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        peer.ExpectNothing(TimeSpan.FromSeconds(5)); // no SYN retransmission

        peer.StackPort = syn.SourcePort;
        peer.Send(SynAck, seq: 5000, ack: syn.Seq + 1, options: RawPeer.SynOptions());
        peer.Expect(Rst, seq: syn.Seq + 1, within: TimeSpan.Zero);
    }

    [Fact]
    public void Cancelling_after_the_handshake_changes_nothing()
    {
        using var peer = new RawPeer();
        using var cancel = new CancellationTokenSource();
        var (connection, _) = ConnectionOptionTraces.OpenActiveWith(peer, null);
        cancel.Cancel();
        peer.ExpectNothing(TimeSpan.FromSeconds(1));
        Assert.Equal(TcpState.Established, connection.GetInfo().State);
        Assert.Equal(TaskStatus.Canceled, peer.Stack.ConnectAsync(PeerEndPoint(peer), null, null, cancel.Token).Status);
    }

    [Fact]
    public void A_connect_bound_to_a_local_port_sends_from_it_and_a_port_in_use_fails_clearly()
    {
        using var peer = new RawPeer();
        var (connection, syn) = ConnectionOptionTraces.OpenActiveWith(peer, null, local: new IPEndPoint(IPAddress.Any, 5555));
        Assert.Equal(5555, syn.SourcePort);
        Assert.Equal(5555, connection.LocalEndPoint!.Port);

        // bind(2) without SO_REUSEADDR: a port any connection or listener uses is refused, whatever the remote end.
        peer.Port = 40001;
        var again = peer.Stack.ConnectAsync(PeerEndPoint(peer), new IPEndPoint(IPAddress.Any, 5555), null, CancellationToken.None);
        peer.Await((Task)again, TimeSpan.Zero);
        Assert.Contains("Local port 5555", Assert.IsType<InvalidOperationException>(again.Exception!.InnerException).Message);
        using var listener = peer.Stack.Listen(7000);
        var onListener = peer.Stack.ConnectAsync(PeerEndPoint(peer), new IPEndPoint(IPAddress.Any, 7000), null, CancellationToken.None);
        peer.Await((Task)onListener, TimeSpan.Zero);
        Assert.IsType<InvalidOperationException>(onListener.Exception!.InnerException);
        peer.ExpectNothing(); // neither sent a SYN
        ArgumentException? wrongAddress = null;
        try
        {
            _ = peer.Stack.ConnectAsync(PeerEndPoint(peer), new IPEndPoint(IPAddress.Parse("198.18.0.9"), 1), null, CancellationToken.None);
        }
        catch (ArgumentException ex)
        {
            wrongAddress = ex; // thrown at once: not the stack's address
        }

        Assert.NotNull(wrongAddress);
    }

    [Fact]
    public void Listening_on_port_0_binds_a_free_ephemeral_port_and_reports_it()
    {
        using var peer = new RawPeer();
        using var first = peer.Stack.Listen(0);
        using var second = peer.Stack.Listen(0);
        Assert.InRange(first.Port, (ushort)49152, (ushort)65535);
        Assert.NotEqual(first.Port, second.Port);

        var accepting = first.AcceptAsync().AsTask();
        peer.StackPort = first.Port;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, ack: 1001);
        Assert.Equal(first.Port, synAck.SourcePort);
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        Assert.Equal(first.Port, peer.Await(accepting, TimeSpan.Zero).LocalEndPoint!.Port);
    }

    [Fact]
    public void After_ShutdownReceive_receives_end_sending_goes_on_and_new_data_is_answered_with_RST()
    {
        // RFC 1122 §4.2.2.13: data that arrives when the application will not read it SHOULD get RST, so the sender learns it was lost.
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.ShutdownReceive();
        var receiving = connection.ReceiveAsync(new byte[10]).AsTask();
        Assert.True(receiving.IsCompletedSuccessfully);
        Assert.Equal(0, TraceAssert.Result(receiving));
        Assert.True(connection.IsEndOfStream);

        var sending = connection.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(Ack, seq: R, ack: s + 10);
        Assert.True(sending.IsCompletedSuccessfully);

        peer.Send(PshAck, seq: R, ack: s + 10, payload: TraceAssert.Bytes(5));
        peer.Expect(RstAck, seq: s + 10, within: TimeSpan.Zero);
        Assert.Equal(TcpError.Aborted, connection.Error!.Error);
        Assert.Equal(TcpState.Closed, peer.State);
    }

    [Fact]
    public void ShutdownReceive_over_unread_data_resets_at_once()
    {
        // RFC 2525 §2.17 (and RFC 1122 §4.2.2.13): data dropped unread is signalled with RST.
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        peer.Send(PshAck, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(5));
        connection.ShutdownReceive();
        peer.Expect(RstAck, seq: iss + 1, within: TimeSpan.FromMilliseconds(100));
        Assert.True(connection.Closed.IsCompleted);
    }
}
