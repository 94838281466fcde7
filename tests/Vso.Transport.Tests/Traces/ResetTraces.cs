using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>RFC 9293 §3.5.2/§3.10.7 reset generation and processing, with RFC 5961's blind-attack defences.</summary>
public sealed class ResetTraces
{
    private const uint R = 1001;

    [Fact]
    public void Segment_with_ACK_to_a_closed_port_gets_RST_with_SEQ_equal_to_SEG_ACK()
    {
        using var peer = new RawPeer();
        peer.StackPort = 81;
        peer.Send(PshAck, seq: 100, ack: 777, payload: [1, 2, 3]);
        var rst = peer.Expect(Rst, seq: 777, ack: 0, within: TimeSpan.Zero);
        Assert.Equal(81, rst.SourcePort);
        Assert.Equal(0, rst.Length);
    }

    [Fact]
    public void Segment_without_ACK_to_a_closed_port_gets_RST_ACK_with_ACK_equal_to_SEQ_plus_LEN()
    {
        using var peer = new RawPeer();
        peer.StackPort = 81;
        peer.Send(Syn, seq: 100);
        peer.Expect(RstAck, seq: 0, ack: 101, within: TimeSpan.Zero);

        // SYN and FIN both count in SEG.LEN.
        peer.Send(Syn | Fin, seq: 200, payload: [1, 2, 3, 4, 5]);
        peer.Expect(RstAck, seq: 0, ack: 207, within: TimeSpan.Zero);
    }

    [Fact]
    public void RST_to_a_closed_port_is_not_answered()
    {
        using var peer = new RawPeer();
        peer.StackPort = 81;
        peer.Send(Rst, seq: 100);
        peer.Send(RstAck, seq: 100, ack: 5);
        peer.ExpectNothing(TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void RST_in_SYN_SENT_with_acceptable_ACK_refuses_the_connect()
    {
        using var peer = new RawPeer();
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var syn = peer.Expect(Syn);
        peer.Port = 7000;
        peer.StackPort = syn.SourcePort;
        peer.Send(RstAck, seq: 0, ack: syn.Seq + 1);
        TraceAssert.FailedWith(connecting, TcpError.Refused);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        peer.ExpectNothing(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void RST_in_SYN_SENT_without_ACK_or_with_unacceptable_ACK_is_ignored()
    {
        using var peer = new RawPeer();
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var syn = peer.Expect(Syn);
        peer.Port = 7000;
        peer.StackPort = syn.SourcePort;
        peer.Send(Rst, seq: 0);
        peer.Send(RstAck, seq: 0, ack: syn.Seq + 2);
        peer.Send(RstAck, seq: 0, ack: syn.Seq);
        peer.ExpectNothing();
        Assert.Equal(TcpState.SynSent, peer.State);
        Assert.False(connecting.IsCompleted);

        // Still connecting: the SYN is retransmitted on time.
        var again = peer.Expect(Syn, seq: syn.Seq);
        Assert.Equal(TimeSpan.FromSeconds(1), again.At - syn.At);
    }

    [Fact]
    public void RST_in_SYN_RECEIVED_drops_the_half_open_connection_and_the_listener_goes_on()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        peer.Send(Syn, seq: 1000);
        peer.Expect(SynAck, ack: R);
        peer.Send(Rst, seq: R);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        Assert.False(listener.TryAccept(out _));
        peer.ExpectNothing(TimeSpan.FromSeconds(5)); // no SYN-ACK retransmissions

        peer.Port = 40001;
        peer.Send(Syn, seq: 2000);
        peer.Expect(SynAck, ack: 2001);
    }

    [Fact]
    public void RST_in_SYN_RECEIVED_after_a_simultaneous_open_refuses_the_connect()
    {
        using var peer = new RawPeer();
        peer.Port = 7000;
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var syn = peer.Expect(Syn);
        peer.StackPort = syn.SourcePort;
        peer.Send(Syn, seq: 300);
        peer.Expect(SynAck, seq: syn.Seq, ack: 301);
        Assert.Equal(TcpState.SynReceived, peer.State);

        // §3.10.7.4 second check, SYN-RECEIVED: "If this connection was initiated with an active OPEN ... the connection was refused".
        peer.Send(Rst, seq: 301);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        TraceAssert.FailedWith(connecting, TcpError.Refused);
    }

    [Fact]
    public void RST_in_ESTABLISHED_fails_pending_receive_and_send_with_Reset()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();
        var sending = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Expect(PshAck, seq: s, ack: R, within: TimeSpan.Zero);

        peer.Send(Rst, seq: R);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        Assert.Equal(TcpState.Closed, connection.GetInfo().State);
        TraceAssert.FailedWith(receiving, TcpError.Reset);
        TraceAssert.FailedWith(sending, TcpError.Reset);
        var late = connection.SendAsync(new byte[1]);
        peer.RunUntil(() => late.IsCompleted, TimeSpan.Zero);
        TraceAssert.FailedWith(late, TcpError.Reset);
        peer.ExpectNothing(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void RST_in_FIN_WAIT_1_resets_the_connection()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: iss + 1, ack: R, within: TimeSpan.Zero);
        Assert.Equal(TcpState.FinWait1, peer.State);
        peer.Send(RstAck, seq: R, ack: iss + 1);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        TraceAssert.FailedWith(receiving, TcpError.Reset);
    }

    [Fact]
    public void RST_in_FIN_WAIT_2_resets_the_connection()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: iss + 1, ack: R, within: TimeSpan.Zero);
        peer.Send(Ack, seq: R, ack: iss + 2);
        Assert.Equal(TcpState.FinWait2, peer.State);
        peer.Send(Rst, seq: R);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        TraceAssert.FailedWith(receiving, TcpError.Reset);
    }

    [Fact]
    public void RST_in_CLOSE_WAIT_fails_the_pending_send()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.CloseWait, peer.State);
        var sending = connection.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: s, ack: R + 1, within: TimeSpan.Zero);
        peer.Send(Rst, seq: R + 1);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        TraceAssert.FailedWith(sending, TcpError.Reset);
    }

    [Fact]
    public void RST_in_window_but_not_exact_gets_a_challenge_ACK_and_the_connection_survives()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(Rst, seq: R + 10);
        peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Established, peer.State);

        // The connection still carries data.
        peer.Send(PshAck, seq: R, ack: s, payload: [42]);
        Assert.Equal(new byte[] { 42 }, peer.Read(connection));
    }

    [Fact]
    public void RST_out_of_window_is_ignored()
    {
        using var peer = new RawPeer();
        var (_, _) = peer.OpenPassive();
        peer.Send(Rst, seq: R - 1);
        peer.Send(Rst, seq: R + 2_000_000);
        peer.ExpectNothing();
        Assert.Equal(TcpState.Established, peer.State);
    }

    [Fact]
    public void SYN_in_ESTABLISHED_gets_a_challenge_ACK()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive();
        var s = iss + 1;

        // RFC 5961 §4.2: whatever its sequence number, in window or not. §7: at most one such ACK per 500 ms.
        peer.Send(Syn, seq: R + 5);
        peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Advance(TimeSpan.FromMilliseconds(500));
        peer.Send(Syn, seq: 1000);
        peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Advance(TimeSpan.FromMilliseconds(500));
        peer.Send(Syn, seq: R);
        peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Established, peer.State);
        Assert.Equal(R, peer.Connection!.ReceiveNext);
    }

    [Fact]
    public void Abort_sends_RST_and_fails_pending_operations()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();
        connection.Abort();
        var rst = peer.Expect(RstAck, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(0, rst.Length);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        TraceAssert.FailedWith(receiving, TcpError.Aborted);
        peer.ExpectNothing(TimeSpan.FromSeconds(5));
    }
}
