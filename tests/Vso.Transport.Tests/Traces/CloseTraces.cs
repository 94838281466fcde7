using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>RFC 9293 §3.6 closing a connection, and the FIN rules of §3.10.7.4 (eighth check).</summary>
public sealed class CloseTraces
{
    private const uint R = 1001; // the peer's first data sequence number (ISN 1000)

    [Fact]
    public void Active_close_goes_FIN_WAIT_1_FIN_WAIT_2_TIME_WAIT_CLOSED()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var closed = connection.CloseAsync();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(TcpState.FinWait1, peer.State);

        peer.Send(Ack, seq: R, ack: s + 1);
        Assert.Equal(TcpState.FinWait2, peer.State);
        peer.ExpectNothing();

        peer.Send(FinAck, seq: R, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);
        Assert.True(closed.IsCompletedSuccessfully);

        var entered = peer.Now;
        peer.ExpectNothing(TimeSpan.FromSeconds(60) - TimeSpan.FromMilliseconds(1));
        Assert.Equal(TcpState.TimeWait, peer.State);
        peer.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(TimeSpan.FromSeconds(60), peer.Now - entered);
        Assert.Equal(0, peer.Stack.ConnectionCount);
    }

    [Fact]
    public void Passive_close_goes_CLOSE_WAIT_LAST_ACK_CLOSED()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var buffer = new byte[16];
        var receiving = connection.ReceiveAsync(buffer).AsTask();

        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.CloseWait, peer.State);
        Assert.Equal(0, TraceAssert.Result(receiving));

        var closed = connection.CloseAsync();
        peer.Expect(FinAck, seq: s, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.LastAck, peer.State);
        Assert.False(closed.IsCompleted);

        peer.Send(Ack, seq: R + 1, ack: s + 1);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        Assert.True(closed.IsCompletedSuccessfully);
        peer.ExpectNothing(TimeSpan.FromMinutes(2));
    }

    [Fact]
    public void Simultaneous_close_goes_CLOSING_then_TIME_WAIT()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(10));
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);

        // The peer's FIN crosses ours: it does not acknowledge our FIN.
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Closing, peer.State);

        peer.Send(Ack, seq: R + 1, ack: s + 1);
        Assert.Equal(TcpState.TimeWait, peer.State);
        peer.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(0, peer.Stack.ConnectionCount);
    }

    [Fact]
    public void FIN_in_SYN_RECEIVED_with_the_handshake_ACK_goes_to_CLOSE_WAIT()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        peer.Send(Syn, seq: 1000);
        var synAck = peer.Expect(SynAck, ack: R);
        peer.Send(FinAck, seq: R, ack: synAck.Seq + 1);
        peer.Expect(Ack, seq: synAck.Seq + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.CloseWait, peer.State);
        Assert.True(listener.TryAccept(out var connection));
        Assert.Empty(peer.Read(connection));
    }

    [Fact]
    public void FIN_without_ACK_in_SYN_RECEIVED_is_dropped()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        peer.Send(Syn, seq: 1000);
        peer.Expect(SynAck, ack: R);
        peer.Send(Fin, seq: R);
        peer.ExpectNothing();
        Assert.Equal(TcpState.SynReceived, peer.State);
    }

    [Fact]
    public void FIN_with_data_in_ESTABLISHED_delivers_the_data_then_end_of_stream()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(FinPshAck, seq: R, ack: s, payload: [1, 2, 3, 4, 5]);
        peer.Expect(Ack, seq: s, ack: R + 6, within: TimeSpan.Zero);
        Assert.Equal(TcpState.CloseWait, peer.State);
        Assert.Equal(5, peer.Read(connection).Length);
        Assert.Empty(peer.Read(connection));
        Assert.Empty(peer.Read(connection));
    }

    [Fact]
    public void FIN_in_FIN_WAIT_2_with_data_goes_to_TIME_WAIT()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(Ack, seq: R, ack: s + 1);
        Assert.Equal(TcpState.FinWait2, peer.State);

        // Half-closed: the peer still sends, then closes.
        peer.Send(FinPshAck, seq: R, ack: s + 1, payload: [9, 8, 7]);
        peer.Expect(Ack, seq: s + 1, ack: R + 4, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);
        Assert.Equal(new byte[] { 9, 8, 7 }, peer.Read(connection));
        Assert.Empty(peer.Read(connection));
    }

    [Fact]
    public void FIN_in_FIN_WAIT_1_that_also_acknowledges_our_FIN_goes_to_TIME_WAIT()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);
    }

    [Fact]
    public void Retransmitted_FIN_in_CLOSE_WAIT_is_ACKed_again()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.CloseWait, peer.State);
    }

    [Fact]
    public void Retransmitted_FIN_in_CLOSING_is_ACKed_again()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Closing, peer.State);
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Closing, peer.State);
    }

    [Fact]
    public void Retransmitted_FIN_in_LAST_ACK_is_ACKed_again()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.LastAck, peer.State);
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.LastAck, peer.State);
    }

    [Fact]
    public void Retransmitted_FIN_in_TIME_WAIT_is_ACKed_again_and_restarts_the_timer()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        peer.Advance(TimeSpan.FromSeconds(30));
        peer.Send(FinAck, seq: R, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        var restarted = peer.Now;

        peer.Advance(TimeSpan.FromSeconds(60) - TimeSpan.FromMilliseconds(1));
        Assert.Equal(TcpState.TimeWait, peer.State);
        peer.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(TimeSpan.FromSeconds(60), peer.Now - restarted);
        Assert.Equal(0, peer.Stack.ConnectionCount);
    }

    [Fact]
    public void Data_after_the_FIN_is_not_delivered()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);

        // §3.10.7.4 seventh check, CLOSE-WAIT: "This should not occur since a FIN has been received ... Ignore the segment text."
        peer.Send(PshAck, seq: R + 1, ack: s, payload: [1, 2, 3]);
        Assert.Equal(TcpState.CloseWait, peer.State);
        Assert.Equal(R + 1, connection.GetInfo().ReceiveNext);
        Assert.Empty(peer.Read(connection));
    }

    /// <summary>
    /// RFC 9293 §3.10.7.4: TIME-WAIT holds the connection for 2*MSL only to answer a retransmitted FIN; the application is
    /// done with it (issue 12, connection setup). The entry keeps none of the application's objects alive, so the
    /// per-connection state of an embedding (Kestrel's connection, its pipes) is collected while the 4-tuple still waits,
    /// and a send after the close is still refused through the endpoint's host.
    /// </summary>
    [Fact]
    public void TIME_WAIT_keeps_no_application_object_alive()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        var (weak, late, s) = CloseIntoTimeWait(peer);
        Assert.Equal(TcpState.TimeWait, peer.State);
        peer.Advance(TimeSpan.FromMilliseconds(1));
        TraceAssert.FailedWith(late, TcpError.Aborted);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(weak.IsAlive, "the connection in TIME-WAIT still holds the application's VsoConnection");
        Assert.Equal(1, peer.Stack.ConnectionCount);

        // The 4-tuple still answers a retransmitted FIN (RFC 9293 §3.10.7.4, TIME-WAIT).
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static (WeakReference Connection, Task LateSend, uint StackNext) CloseIntoTimeWait(RawPeer peer)
    {
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.CloseAsync();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        return (new WeakReference(connection), connection.SendAsync(new byte[10]), s + 1);
    }
}
