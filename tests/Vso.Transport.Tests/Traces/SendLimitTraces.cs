using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// The bounded send side (issue 11 item 9): a send limit on bytes queued and unacknowledged, a try-form that refuses
/// above it, and a not-sent low-water mark in the spirit of Linux's TCP_NOTSENT_LOWAT.
/// </summary>
public sealed class SendLimitTraces
{
    private const uint R = 1001;

    [Fact]
    public void A_send_above_the_limit_waits_and_goes_when_acknowledgments_make_room()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.SendBufferSize = 3000;
        var a = connection.SendAsync(TraceAssert.Bytes(2000));
        var b = connection.SendAsync(TraceAssert.Bytes(2000)); // queued whole: 2000 < 3000
        var c = connection.SendAsync(TraceAssert.Bytes(1000)); // 4000 >= 3000: waits
        Assert.Equal(1460, peer.Expect(Ack, seq: s, within: TimeSpan.Zero).Length);
        Assert.Equal(1460, peer.Expect(Ack, seq: s + 1460, within: TimeSpan.Zero).Length);
        Assert.Equal(1080, peer.Expect(PshAck, seq: s + 2920, within: TimeSpan.Zero).Length);
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));
        Assert.Equal(5000, connection.SendQueueBytes);
        Assert.Equal(1000, connection.NotSentBytes);

        peer.Send(Ack, seq: R, ack: s + 2000); // the first send is acknowledged: 2000 queued, room again
        Assert.True(a.IsCompletedSuccessfully);
        Assert.Equal(1000, peer.Expect(PshAck, seq: s + 4000, within: TimeSpan.Zero).Length);
        Assert.Equal(3000, connection.SendQueueBytes);
        peer.Send(Ack, seq: R, ack: s + 5000);
        Assert.True(b.IsCompletedSuccessfully && c.IsCompletedSuccessfully);
        Assert.Equal(0, connection.SendQueueBytes);
    }

    [Fact]
    public void A_shutdown_waits_behind_held_sends()
    {
        // RFC 9293 §3.10.4: the FIN follows every byte queued before CLOSE, held ones included.
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.SendBufferSize = 1000;
        _ = connection.SendAsync(TraceAssert.Bytes(1000));
        var held = connection.SendAsync(TraceAssert.Bytes(500));
        connection.ShutdownSend();
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        peer.ExpectNothing(TimeSpan.FromMilliseconds(50)); // neither the held send nor a FIN
        peer.Send(Ack, seq: R, ack: s + 1000);
        Assert.Equal(500, peer.Expect(FinPshAck, seq: s + 1000, within: TimeSpan.Zero).Length);
        peer.Send(Ack, seq: R, ack: s + 1501);
        Assert.True(held.IsCompletedSuccessfully);
        Assert.Equal(TcpState.FinWait2, peer.State);
    }

    [Fact]
    public void TrySend_refuses_above_the_limit_and_takes_again_once_acknowledged()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.SendBufferSize = 3000;
        Assert.True(connection.TrySend(TraceAssert.Bytes(2000), out var first));
        Assert.True(connection.TrySend(TraceAssert.Bytes(1000), out var second));
        Assert.False(connection.TrySend(TraceAssert.Bytes(10), out var refused));
        Assert.Null(refused);
        peer.Expect(Ack, seq: s, within: TimeSpan.Zero);
        peer.Expect(Ack, seq: s + 1460, within: TimeSpan.Zero);
        peer.Expect(PshAck, seq: s + 2920, within: TimeSpan.Zero);
        peer.ExpectNothing(TimeSpan.FromMilliseconds(50)); // nothing of the refused send

        peer.Send(Ack, seq: R, ack: s + 1000); // acknowledges part of the first send only: 2000 still queued
        Assert.True(connection.TrySend(TraceAssert.Bytes(10), out var third));
        Assert.Equal(10, peer.Expect(PshAck, seq: s + 3000, within: TimeSpan.Zero).Length);
        peer.Send(Ack, seq: R, ack: s + 3010);
        Assert.True(first.IsCompletedSuccessfully && second.IsCompletedSuccessfully && third.IsCompletedSuccessfully);
    }

    [Fact]
    public void TrySend_from_a_completion_inside_the_engine_queues_in_order()
    {
        // The first send completes inside the sender's ACK processing (continuations run inline here): the send taken
        // there is queued in the next turn of the same instant, behind a send posted before it.
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var first = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        var taken = false;
        Task? fromCompletion = null;
        _ = first.ContinueWith(
            _ =>
            {
                _ = connection.SendAsync(TraceAssert.Bytes(10, start: 1));
                taken = connection.TrySend(TraceAssert.Bytes(20, start: 2), out fromCompletion);
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        peer.Send(Ack, seq: R, ack: s + 100);
        Assert.True(taken);
        var next = peer.Expect(PshAck, seq: s + 100, within: TimeSpan.Zero);
        Assert.Equal(30, next.Length);
        Assert.Equal(TraceAssert.Bytes(10, start: 1), next.Payload[..10]);
        Assert.Equal(TraceAssert.Bytes(20, start: 2), next.Payload[10..]);
        peer.Send(Ack, seq: R, ack: s + 130);
        Assert.True(fromCompletion!.IsCompletedSuccessfully);
    }

    [Fact]
    public void WaitWritable_waits_for_the_unsent_bytes_to_fall_below_the_low_water_mark()
    {
        // TCP_NOTSENT_LOWAT: writable only while fewer than the mark are not yet sent; the peer's window (RFC 9293 §3.8.6) meters them out.
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive(window: 1000);
        var s = iss + 1;
        connection.NotSentLowWatermark = 1500;
        _ = connection.SendAsync(TraceAssert.Bytes(3000));
        peer.Expect(Ack, seq: s, within: TimeSpan.Zero);
        Assert.Equal(2000, connection.NotSentBytes);
        var writable = connection.WaitWritableAsync();
        Assert.False(connection.TrySend(TraceAssert.Bytes(1), out _));
        peer.Advance(TimeSpan.FromMilliseconds(10));
        Assert.False(writable.IsCompleted);

        peer.Send(Ack, seq: R, ack: s + 1000, window: 1000);
        peer.Expect(Ack, seq: s + 1000, within: TimeSpan.Zero);
        Assert.Equal(1000, connection.NotSentBytes);
        Assert.True(writable.IsCompletedSuccessfully); // 1000 < 1500, with no acknowledgment of those bytes needed
        Assert.Equal(1000, connection.GetInfo().NotSentBytes);
        Assert.True(connection.TrySend(TraceAssert.Bytes(1), out _));
    }

    [Fact]
    public void WaitWritable_fails_with_the_connection_error()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive(window: 0);
        connection.SendBufferSize = 100;
        _ = connection.SendAsync(TraceAssert.Bytes(100));
        var writable = connection.WaitWritableAsync();
        peer.Advance(TimeSpan.FromMilliseconds(10));
        Assert.False(writable.IsCompleted);
        peer.Send(Rst, seq: R);
        TraceAssert.FailedWith(writable, TcpError.Reset);
    }

    [Fact]
    public void WaitWritable_can_be_cancelled()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, _) = peer.OpenPassive(window: 0);
        connection.SendBufferSize = 100;
        _ = connection.SendAsync(TraceAssert.Bytes(100));
        using var cancel = new CancellationTokenSource();
        var writable = connection.WaitWritableAsync(cancel.Token);
        peer.Advance(TimeSpan.FromMilliseconds(10));
        cancel.Cancel();
        Assert.True(writable.IsCanceled);
        Assert.Equal(TcpState.Established, peer.State);
    }

    [Fact]
    public void Held_sends_fail_with_the_connection()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, _) = peer.OpenPassive(window: 0);
        connection.SendBufferSize = 100;
        var queued = connection.SendAsync(TraceAssert.Bytes(100));
        var held = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Advance(TimeSpan.FromMilliseconds(10));
        Assert.Equal(200, connection.SendQueueBytes);
        connection.Abort();
        peer.Expect(RstAck, within: TimeSpan.Zero);
        TraceAssert.FailedWith(queued, TcpError.Aborted);
        TraceAssert.FailedWith(held, TcpError.Aborted);
        Assert.Equal(0, connection.SendQueueBytes);
        Assert.Equal(0, peer.Stack.PinnedBytes);
    }
}
