using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// RFC 5961 (blind in-window attacks) in full: §3 RST, §4 SYN, §5 the ACK acceptability range with MAX.SND.WND; RFC 9293
/// §3.10.7.4 and RFC 7323 §4.3/§5.3 for ACKs of unsent data and TS.Recent; and the acceptability test against the window
/// actually advertised (RFC 7323 §2.2-2.3: 65,535 bytes when the peer does not scale).
/// </summary>
public sealed class BlindAttackTraces
{
    private const uint R = 1001;

    /// <summary>The stack's buffer is 1 MiB; a peer without window scaling is offered 65,535 bytes of it.</summary>
    private const uint UnscaledWindow = 65535;

    private static TcpOptions Timestamps(uint tsVal, uint tsEcr)
    {
        var o = TcpOptions.None;
        o.HasTimestamp = true;
        o.TsVal = tsVal;
        o.TsEcr = tsEcr;
        return o;
    }

    [Fact]
    public void RFC5961_3_2_in_window_RST_gets_a_challenge_ACK_and_the_connection_lives()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive();
        peer.Send(Rst, seq: R + 100);
        peer.Expect(Ack, seq: iss + 1, ack: R, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Established, peer.State);
        Assert.Equal(1, peer.Connection!.Statistics.ChallengeAcksSent);
    }

    [Fact]
    public void RFC5961_3_2_RST_exactly_at_RCV_NXT_resets_the_connection()
    {
        using var peer = new RawPeer();
        var (connection, _) = peer.OpenPassive();
        var receiving = connection.ReceiveAsync(new byte[16]).AsTask();
        peer.Send(Rst, seq: R);
        peer.ExpectNothing();
        Assert.Equal(TcpState.Closed, peer.State);
        TraceAssert.FailedWith(receiving, TcpError.Reset);
    }

    [Fact]
    public void RFC5961_4_2_in_window_SYN_gets_a_challenge_ACK_and_the_connection_lives()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive();
        peer.Send(Syn, seq: R + 10, options: RawPeer.SynOptions());
        peer.Expect(Ack, seq: iss + 1, ack: R, within: TimeSpan.Zero);
        Assert.Equal(TcpState.Established, peer.State);
        Assert.Equal(1, peer.Connection!.Statistics.ChallengeAcksSent);
    }

    [Fact]
    public void RFC5961_5_2_ACK_older_than_MAX_SND_WND_gets_a_challenge_ACK_and_its_data_is_not_delivered()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;

        // SEG.SEQ = RCV.NXT, but SEG.ACK lies 2^30 behind SND.NXT: a blind injection that guessed the sequence number.
        peer.Send(PshAck, seq: R, ack: s - (1u << 30), payload: [6, 6, 6]);
        peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(R, connection.GetInfo().ReceiveNext);
        Assert.Equal(1, peer.Connection!.Statistics.ChallengeAcksSent);

        // The stream is untouched: the real bytes at RCV.NXT arrive as the first ones.
        peer.Send(PshAck, seq: R, ack: s, payload: [1, 2, 3]);
        Assert.Equal(new byte[] { 1, 2, 3 }, peer.Read(connection));
    }

    [Fact]
    public void RFC5961_5_2_old_ACK_within_MAX_SND_WND_is_still_acceptable()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var sending = connection.SendAsync(TraceAssert.Bytes(1000));
        peer.Expect(PshAck, seq: s, ack: R);
        peer.Send(Ack, seq: R, ack: s + 1000);
        peer.Await(sending, TimeSpan.Zero);

        // SND.UNA - 500 >= SND.UNA - min(MAX.SND.WND, bytes acknowledged): a reordered old ACK, its data is taken.
        peer.Send(PshAck, seq: R, ack: s + 500, payload: [1, 2, 3]);
        Assert.Equal(new byte[] { 1, 2, 3 }, peer.Read(connection));
        Assert.Equal(0, peer.Connection!.Statistics.ChallengeAcksSent);

        // Below SND.UNA - 1000 nothing was ever sent: too old.
        peer.Send(PshAck, seq: R + 3, ack: s - 1, payload: [4]);
        peer.Expect(Ack, seq: s + 1000, ack: R + 3, within: TimeSpan.FromMilliseconds(40));
        Assert.Equal(R + 3, connection.GetInfo().ReceiveNext);
    }

    [Fact]
    public void RFC5961_5_2_too_old_ACK_with_timestamps_gets_a_challenge_ACK_and_TS_Recent_stays()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(tsVal: 100));
        var s = iss + 1;
        peer.Send(PshAck, seq: R, ack: s - (1u << 30), options: Timestamps(0x4000_0000, 0), payload: [6, 6, 6]);
        var challenge = peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(100u, challenge.Options.TsEcr);
        Assert.Equal(R, connection.GetInfo().ReceiveNext);

        peer.Send(PshAck, seq: R, ack: s, options: Timestamps(101, challenge.Options.TsVal), payload: [1, 2, 3]);
        Assert.Equal(new byte[] { 1, 2, 3 }, peer.Read(connection));
    }

    [Fact]
    public void RFC9293_ACK_of_unsent_data_is_ACKed_and_dropped_and_leaves_TS_Recent_alone()
    {
        // RFC 9293 §3.10.7.4 fifth check (SEG.ACK > SND.NXT: send an ACK, drop the segment, return); RFC 7323 §4.3/§5.3:
        // TS.Recent is updated only from an acceptable segment. One forged segment must not stall the connection.
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(tsVal: 100));
        var s = iss + 1;
        peer.Send(PshAck, seq: R, ack: s + 1_000_000, options: Timestamps(0x7000_0000, 0), payload: [6, 6, 6]);
        var reply = peer.Expect(Ack, seq: s, ack: R, within: TimeSpan.Zero);
        Assert.Equal(100u, reply.Options.TsEcr);
        Assert.Equal(R, connection.GetInfo().ReceiveNext);

        // A valid segment afterwards passes PAWS and is delivered.
        peer.Send(PshAck, seq: R, ack: s, options: Timestamps(101, reply.Options.TsVal), payload: [1, 2, 3]);
        Assert.Equal(new byte[] { 1, 2, 3 }, peer.Read(connection));
        var ack = peer.Expect(Ack, seq: s, ack: R + 3, within: TimeSpan.FromMilliseconds(40));
        Assert.Equal(101u, ack.Options.TsEcr);
    }

    [Fact]
    public void RST_just_beyond_the_advertised_unscaled_window_is_dropped_silently()
    {
        // RFC 5961 §3.2 with RFC 7323 §2.2-2.3: the peer does not scale, we offered 65,535 bytes; the buffer is larger.
        using var peer = new RawPeer();
        var (_, _) = peer.OpenPassive();
        peer.Send(Rst, seq: R + UnscaledWindow + 100);
        peer.ExpectNothing();
        Assert.Equal(TcpState.Established, peer.State);
        Assert.Equal(0, peer.Connection!.Statistics.ChallengeAcksSent);

        // The last byte offered is still in the window: a challenge ACK.
        peer.Send(Rst, seq: R + UnscaledWindow - 1);
        peer.Expect(Ack, ack: R, within: TimeSpan.Zero);
    }

    [Fact]
    public void SYN_just_beyond_the_advertised_unscaled_window_is_an_unacceptable_segment_not_a_challenge()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive();
        var dropped = peer.Connection!.Statistics.DroppedSegments;
        peer.Send(Syn, seq: R + UnscaledWindow + 100, options: RawPeer.SynOptions());
        peer.Expect(Ack, seq: iss + 1, ack: R, within: TimeSpan.Zero); // RFC 9293 §3.10.7.4 first check
        Assert.Equal(0, peer.Connection!.Statistics.ChallengeAcksSent);
        Assert.Equal(dropped + 1, peer.Connection!.Statistics.DroppedSegments);
        Assert.Equal(TcpState.Established, peer.State);
    }

    [Fact]
    public void Data_just_beyond_the_advertised_unscaled_window_is_ACKed_and_not_held()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        peer.Send(PshAck, seq: R + UnscaledWindow + 100, ack: iss + 1, payload: TraceAssert.Bytes(100));
        peer.Expect(Ack, seq: iss + 1, ack: R, within: TimeSpan.Zero);
        Assert.Equal(0, peer.Connection!.Receiver.OutOfOrderRanges);
        Assert.Equal(R, connection.GetInfo().ReceiveNext);

        // Inside the offered window, out of order data is held as usual.
        peer.Send(PshAck, seq: R + 1000, ack: iss + 1, payload: TraceAssert.Bytes(100));
        peer.Expect(Ack, ack: R, within: TimeSpan.Zero);
        Assert.Equal(1, peer.Connection!.Receiver.OutOfOrderRanges);
    }
}
