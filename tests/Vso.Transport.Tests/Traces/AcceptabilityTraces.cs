using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>RFC 9293 §3.10.7.4 first check (sequence number acceptability) and fifth check (SEG.ACK), and §3.4 wraparound.</summary>
public sealed class AcceptabilityTraces
{
    private const uint R = 1001;

    // A 4 KiB buffer: no window scaling needed, RCV.WND = 4096.
    private static RawPeer SmallWindowPeer() => new(s => s.ReceiveBufferSize = 4096);

    [Fact]
    public void Segment_beyond_the_window_is_ACKed_and_dropped()
    {
        using var peer = SmallWindowPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(PshAck, seq: R + 5000, ack: s, payload: TraceAssert.Bytes(10));
        var ack = peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(4096, ack.Window);
        Assert.Equal(R, connection.GetInfo().ReceiveNext);
        Assert.Equal(0, peer.Connection!.Receiver.OutOfOrderRanges);
    }

    [Fact]
    public void Segment_left_of_the_window_is_ACKed_and_dropped()
    {
        using var peer = SmallWindowPeer();
        var (connection, iss) = peer.OpenPassive();
        peer.Send(PshAck, seq: R - 100, ack: iss + 1, payload: TraceAssert.Bytes(10));
        peer.Expect(Ack, seq: iss + 1, ack: R, within: TimeSpan.Zero);
        Assert.Equal(R, connection.GetInfo().ReceiveNext);
    }

    [Fact]
    public void Old_duplicate_is_ACKed_again_and_not_delivered_twice()
    {
        using var peer = SmallWindowPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(PshAck, seq: R, ack: s, payload: [1, 2, 3]);
        Assert.Equal(new byte[] { 1, 2, 3 }, peer.Read(connection));
        peer.Expect(Ack, seq: s, ack: R + 3, within: TimeSpan.FromMilliseconds(40)); // delayed ACK

        peer.Send(PshAck, seq: R, ack: s, payload: [1, 2, 3]);
        peer.Expect(Ack, seq: s, ack: R + 3, within: TimeSpan.Zero);
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();
        peer.Advance(TimeSpan.FromSeconds(1));
        Assert.False(receiving.IsCompleted);
    }

    [Fact]
    public void Segment_overlapping_the_left_edge_is_trimmed()
    {
        using var peer = SmallWindowPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(PshAck, seq: R, ack: s, payload: "abcdef"u8.ToArray());
        peer.Send(PshAck, seq: R + 3, ack: s, payload: "defghi"u8.ToArray());
        Assert.Equal("abcdefghi"u8.ToArray(), peer.Read(connection));
        Assert.Equal(R + 9, connection.GetInfo().ReceiveNext);
    }

    [Fact]
    public void Segment_overlapping_the_right_edge_is_trimmed_to_the_window()
    {
        using var peer = new RawPeer(s => s.ReceiveBufferSize = 2048);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var data = TraceAssert.Bytes(2400);
        peer.Send(Ack, seq: R, ack: s, payload: data[..1400]);
        peer.Send(PshAck, seq: R + 1400, ack: s, payload: data[1400..]); // only 648 of 1000 fit
        var full = peer.Expect(Ack, seq: s, ack: R + 2048, within: TimeSpan.FromMilliseconds(40));
        Assert.Equal(0, full.Window);
        Assert.Equal(data[..2048], peer.Read(connection));
        var update = peer.Expect(Ack, seq: s, ack: R + 2048, within: TimeSpan.Zero);
        Assert.Equal(2048, update.Window);

        peer.Send(PshAck, seq: R + 2048, ack: s, payload: data[2048..]);
        Assert.Equal(data[2048..], peer.Read(connection));
    }

    [Fact]
    public void ACK_of_unsent_data_is_answered_with_an_ACK_and_the_segment_dropped()
    {
        using var peer = SmallWindowPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        peer.Send(PshAck, seq: R, ack: s + 1000, payload: [1, 2, 3]);
        peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(R, connection.GetInfo().ReceiveNext);
        Assert.Equal(s, connection.GetInfo().SendUnacknowledged);
        Assert.Equal(TcpState.Established, peer.State);
    }

    [Fact]
    public void Sequence_numbers_wrap_around_two_to_the_32()
    {
        const uint isn = 0xFFFF_FFF0;
        using var peer = SmallWindowPeer();
        var (connection, iss) = peer.OpenPassive(isn);
        var s = iss + 1;
        var data = TraceAssert.Bytes(100);
        peer.Send(PshAck, seq: isn + 1, ack: s, payload: data); // bytes 0xFFFFFFF1 .. 0x00000054
        peer.Expect(Ack, seq: s, ack: 0x55, within: TimeSpan.FromMilliseconds(40));
        Assert.Equal(data, peer.Read(connection));

        // An old duplicate from before the wrap is still recognised as old.
        peer.Send(PshAck, seq: isn + 1, ack: s, payload: data[..10]);
        peer.Expect(Ack, seq: s, ack: 0x55, within: TimeSpan.Zero);

        // And a segment after the wrap is in order.
        peer.Send(PshAck, seq: 0x55, ack: s, payload: [7, 7]);
        Assert.Equal(new byte[] { 7, 7 }, peer.Read(connection));
        Assert.Equal(0x57u, connection.GetInfo().ReceiveNext);

        // Our data is acknowledged with numbers past the wrap too.
        var sending = connection.SendAsync(TraceAssert.Bytes(20));
        peer.Expect(PshAck, seq: s, ack: 0x57, within: TimeSpan.FromMilliseconds(40));
        peer.Send(Ack, seq: 0x57, ack: s + 20);
        peer.Await(sending, TimeSpan.Zero);
    }
}
