using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>Non-blocking reads (issue 11 item 11): readable bytes, peek, a receive that completes at once, end of stream and error without a receive.</summary>
public sealed class NonBlockingReceiveTraces
{
    private const uint R = 1001;

    [Fact]
    public void Peek_does_not_consume_and_TryReceive_takes_what_is_there()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var buffer = new byte[6];
        Assert.False(connection.TryReceive(buffer, out var none));
        Assert.Equal(0, none);
        Assert.Equal(0, connection.BytesAvailable);

        peer.Send(PshAck, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(10, start: 1));
        Assert.Equal(10, connection.BytesAvailable);
        var peeked = new byte[4];
        Assert.Equal(4, connection.Peek(peeked));
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, peeked);
        Assert.Equal(10, connection.BytesAvailable);

        Assert.True(connection.TryReceive(buffer, out var n));
        Assert.Equal(6, n);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6 }, buffer);
        Assert.Equal(4, connection.BytesAvailable);
        Assert.True(connection.TryReceive(buffer, out n));
        Assert.Equal(4, n);
        Assert.Equal(new byte[] { 7, 8, 9, 10 }, buffer[..4]);
        Assert.False(connection.TryReceive(buffer, out _));
        Assert.False(connection.IsEndOfStream);
    }

    [Fact]
    public void ReceiveAsync_completes_synchronously_when_data_is_already_there()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        peer.Send(PshAck, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(10));
        var buffer = new byte[100];
        var receiving = connection.ReceiveAsync(buffer).AsTask();
        Assert.True(receiving.IsCompletedSuccessfully); // no turn of the engine ran
        Assert.Equal(10, TraceAssert.Result(receiving));

        // Nothing there: it waits, and the next segment completes it.
        var waiting = connection.ReceiveAsync(buffer).AsTask();
        Assert.False(waiting.IsCompleted);
        peer.Send(PshAck, seq: R + 10, ack: iss + 1, payload: TraceAssert.Bytes(5));
        Assert.Equal(5, TraceAssert.Result(waiting));
    }

    [Fact]
    public void A_read_that_opens_a_closed_window_sends_the_window_update()
    {
        // RFC 9293 §3.8.6.2.2: the window reopened by at least min(buffer/2, MSS) is announced, also after a synchronous read.
        using var peer = new RawPeer(s => s.ReceiveBufferSize = 4096);
        var (connection, iss) = peer.OpenPassive();
        peer.Send(Ack, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(1460));
        peer.Send(Ack, seq: R + 1460, ack: iss + 1, payload: TraceAssert.Bytes(1460));
        Assert.Equal(4096 - 2920, peer.Expect(Ack, ack: R + 2920, within: TimeSpan.Zero).Window);
        peer.Send(PshAck, seq: R + 2920, ack: iss + 1, payload: TraceAssert.Bytes(1176));
        Assert.Equal(0, peer.Expect(Ack, ack: R + 4096, within: TimeSpan.FromMilliseconds(200)).Window);

        Assert.True(connection.TryReceive(new byte[4096], out var n));
        Assert.Equal(4096, n);
        Assert.Equal(4096, peer.Expect(Ack, ack: R + 4096, within: TimeSpan.Zero).Window);
    }

    [Fact]
    public void End_of_stream_is_readable_without_a_receive()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        peer.Send(FinPshAck, seq: R, ack: iss + 1, payload: TraceAssert.Bytes(3));
        Assert.False(connection.IsEndOfStream); // three bytes before the FIN are unread
        Assert.True(connection.TryReceive(new byte[10], out var n));
        Assert.Equal(3, n);
        Assert.True(connection.IsEndOfStream);
        Assert.True(connection.TryReceive(new byte[10], out n));
        Assert.Equal(0, n);
        Assert.True(connection.ReceiveAsync(new byte[10]).AsTask().IsCompletedSuccessfully);
        Assert.Null(connection.Error);
    }

    [Fact]
    public void A_pending_error_is_readable_without_a_receive()
    {
        // RFC 9293 §3.10.7.4: a RST at RCV.NXT resets the connection; the application learns it as SO_ERROR would tell.
        using var peer = new RawPeer();
        var (connection, _) = peer.OpenPassive();
        Assert.Null(connection.Error);
        peer.Send(Rst, seq: R);
        Assert.Equal(TcpError.Reset, connection.Error!.Error);
        Assert.False(connection.IsEndOfStream);
        Assert.Equal(TcpError.Reset, Assert.Throws<TcpConnectionException>(() => connection.TryReceive(new byte[10], out _)).Error);
        Assert.True(connection.ReceiveAsync(new byte[10]).AsTask().IsFaulted);
    }

    [Fact]
    public void TryReceive_refuses_while_a_receive_is_pending()
    {
        using var peer = new RawPeer();
        var (connection, _) = peer.OpenPassive();
        Assert.False(connection.ReceiveAsync(new byte[10]).AsTask().IsCompleted);
        Assert.Throws<InvalidOperationException>(() => connection.TryReceive(new byte[10], out _));
    }
}
