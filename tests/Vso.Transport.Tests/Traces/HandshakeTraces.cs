using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>RFC 9293 §3.5 connection establishment, with the options of RFC 7323 and RFC 2018.</summary>
public sealed class HandshakeTraces
{
    /// <summary>
    /// Issue 12 item 4: a listener's SYN-ACK (RFC 9293 §3.10.7.2, LISTEN: "send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>") leaves
    /// in the engine turn that received the SYN, for a burst of 64 SYNs as for one: one Poll, 64 SYN-ACKs on the wire, no
    /// timer or later turn in between.
    /// </summary>
    [Fact]
    public void A_burst_of_SYNs_is_answered_in_the_engine_turn_it_arrives()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80, backlog: 128);
        peer.Pump();
        const int Burst = 64;
        for (var i = 0; i < Burst; i++)
        {
            peer.Send(new TcpRepr { SourcePort = (ushort)(41000 + i), DestinationPort = 80, SequenceNumber = 1000u + (uint)i, Flags = Syn, Window = 65535, Options = RawPeer.SynOptions() }, payload: null, pump: false);
        }

        var start = peer.Now;
        Assert.Equal(0, peer.Collect());
        Assert.True(peer.Stack.Core.Poll());
        Assert.Equal(Burst, peer.Collect());
        for (var i = 0; i < Burst; i++)
        {
            var synAck = peer.Expect(SynAck, ack: 1001u + (uint)i, within: TimeSpan.Zero);
            Assert.Equal((ushort)(41000 + i), synAck.DestinationPort);
            Assert.Equal(start, synAck.At);
        }
    }

    [Fact]
    public void Passive_open_answers_SYN_with_SYN_ACK_carrying_the_offered_options()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        var accepted = listener.AcceptAsync().AsTask();

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions(mss: 1460, windowScale: 7, sackPermitted: true, tsVal: 777));
        var synAck = peer.Expect(SynAck, ack: 1001);
        Assert.Equal(1460, synAck.Options.Mss);
        Assert.Equal(5, synAck.Options.WindowScale); // 1 MiB buffer needs shift 5 to fit 16 bits
        Assert.True(synAck.Options.SackPermitted);
        Assert.True(synAck.Options.HasTimestamp);
        Assert.Equal(777u, synAck.Options.TsEcr);
        Assert.Equal(65535, synAck.Window); // a SYN's window is never scaled
        Assert.Equal(TcpState.SynReceived, peer.State);
        Assert.False(accepted.IsCompleted);

        var ts = RawPeer.SynOptions(mss: 0, tsVal: 778);
        ts.TsEcr = synAck.Options.TsVal;
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1, options: ts);
        peer.ExpectNothing();
        Assert.Equal(TcpState.Established, peer.State);
        var connection = peer.Await(accepted, TimeSpan.Zero);
        Assert.Equal(TcpState.Established, connection.GetInfo().State);
        Assert.Equal(1001u, connection.GetInfo().ReceiveNext);
        Assert.Equal(synAck.Seq + 1, connection.GetInfo().SendNext);
    }

    [Fact]
    public void Passive_open_offers_only_MSS_when_the_SYN_offers_nothing_else()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions(mss: 1460));
        var synAck = peer.Expect(SynAck, ack: 1001);
        Assert.Equal(1460, synAck.Options.Mss);
        Assert.Equal(-1, synAck.Options.WindowScale);
        Assert.False(synAck.Options.SackPermitted);
        Assert.False(synAck.Options.HasTimestamp);
    }

    [Fact]
    public void Active_open_sends_SYN_then_ACKs_the_SYN_ACK()
    {
        using var peer = new RawPeer();
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var syn = peer.Expect(Syn, ack: 0);
        Assert.Equal(7000, syn.DestinationPort);
        Assert.Equal(1460, syn.Options.Mss);
        Assert.Equal(5, syn.Options.WindowScale);
        Assert.True(syn.Options.SackPermitted);
        Assert.True(syn.Options.HasTimestamp);
        Assert.Equal(0u, syn.Options.TsEcr);
        Assert.Equal(TcpState.SynSent, peer.State);
        Assert.False(connecting.IsCompleted);

        peer.Port = 7000;
        peer.StackPort = syn.SourcePort;
        peer.Send(SynAck, seq: 5000, ack: syn.Seq + 1, options: RawPeer.SynOptions());
        var ack = peer.Expect(Ack, seq: syn.Seq + 1, ack: 5001);
        Assert.Equal(0, ack.Length);
        var connection = peer.Await(connecting, TimeSpan.Zero);
        Assert.Equal(TcpState.Established, connection.GetInfo().State);
        peer.ExpectNothing(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void SYN_is_retransmitted_with_exponential_backoff_then_connect_times_out()
    {
        using var peer = new RawPeer(s => s.MaxSynRetransmissions = 3);
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var first = peer.Expect(Syn);
        var t0 = first.At;
        foreach (var expected in new[] { 1, 3, 7 })
        {
            var again = peer.Expect(Syn, seq: first.Seq, ack: 0);
            Assert.Equal(TimeSpan.FromSeconds(expected), again.At - t0);
        }

        peer.ExpectNothing(TimeSpan.FromSeconds(8) - TimeSpan.FromMilliseconds(1));
        Assert.False(connecting.IsCompleted);
        peer.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(TimeSpan.FromSeconds(15), peer.Now - t0);
        TraceAssert.FailedWith(connecting, TcpError.TimedOut);
        Assert.Equal(0, peer.Stack.ConnectionCount);
        peer.ExpectNothing(TimeSpan.FromMinutes(1));
    }

    [Fact]
    public void Lost_SYN_ACK_is_repeated_when_the_SYN_is_repeated_and_on_timeout()
    {
        using var peer = new RawPeer();
        using var listener = peer.Stack.Listen(80);
        peer.Send(Syn, seq: 1000);
        var synAck = peer.Expect(SynAck, ack: 1001);

        // The SYN-ACK was "lost": the peer retransmits its SYN.
        peer.Send(Syn, seq: 1000);
        peer.Expect(SynAck, seq: synAck.Seq, ack: 1001, within: TimeSpan.Zero);
        Assert.Equal(TcpState.SynReceived, peer.State);

        // And the SYN-ACK's own retransmission timer (initial RTO 1 s, Karn: no sample from the repeat).
        var timed = peer.Expect(SynAck, seq: synAck.Seq, ack: 1001);
        Assert.Equal(TimeSpan.FromSeconds(1), timed.At - synAck.At);

        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        Assert.Equal(TcpState.Established, peer.State);
        Assert.True(listener.TryAccept(out _));
    }

    [Fact]
    public void Simultaneous_open_with_a_raw_peer_goes_through_SYN_RECEIVED()
    {
        using var peer = new RawPeer();
        peer.Port = 7000;
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var syn = peer.Expect(Syn);
        peer.StackPort = syn.SourcePort;

        // RFC 9293 §3.5 figure 8: the peer's own SYN crosses ours.
        peer.Send(Syn, seq: 300, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, seq: syn.Seq, ack: 301);
        Assert.Equal(TcpState.SynReceived, peer.State);
        Assert.False(connecting.IsCompleted);

        peer.Send(Ack, seq: 301, ack: synAck.Seq + 1);
        peer.ExpectNothing();
        Assert.Equal(TcpState.Established, peer.State);
        var connection = peer.Await(connecting, TimeSpan.Zero);
        Assert.Equal(TcpState.Established, connection.GetInfo().State);
    }

    [Fact]
    public void Simultaneous_open_with_a_raw_peer_accepts_the_crossing_SYN_ACK()
    {
        using var peer = new RawPeer();
        peer.Port = 7000;
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var syn = peer.Expect(Syn);
        peer.StackPort = syn.SourcePort;
        peer.Send(Syn, seq: 300, options: RawPeer.SynOptions());
        peer.Expect(SynAck, seq: syn.Seq, ack: 301);

        // Figure 8 line 6: the peer's SYN-ACK (seq 300, ack ISS+1) moves SYN-RECEIVED to ESTABLISHED.
        peer.Send(SynAck, seq: 300, ack: syn.Seq + 1, options: RawPeer.SynOptions());
        Assert.Equal(TcpState.Established, peer.State);
        peer.Await(connecting, TimeSpan.Zero);
    }

    [Fact]
    public void Simultaneous_open_between_two_stacks_connecting_at_the_same_instant()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        var clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMilliseconds(5) });
        var addressA = Ipv4Address.Parse("198.18.0.1");
        var addressB = Ipv4Address.Parse("198.18.0.2");
        // Ports are random (RFC 6056): a range of one port makes both stacks pick 49152.
        using var stackA = new VsoStack(a, new VsoStackOptions { Address = addressA, Tcp = new TcpSettings { IsnKey = [1], EphemeralPortFirst = 49152, EphemeralPortLast = 49152 }, InlineContinuations = true }, clock);
        using var stackB = new VsoStack(b, new VsoStackOptions { Address = addressB, Tcp = new TcpSettings { IsnKey = [2], EphemeralPortFirst = 49152, EphemeralPortLast = 49152 }, InlineContinuations = true }, clock);
        var driver = new VirtualTimeDriver(clock, stackA, stackB);

        // Both pick the first ephemeral port, 49152, and connect to each other's 49152: one 4-tuple, two SYNs crossing.
        var fromA = stackA.ConnectAsync(addressB, 49152);
        var fromB = stackB.ConnectAsync(addressA, 49152);
        var start = clock.NowMicroseconds;
        Assert.True(driver.RunUntil(() => fromA.IsCompleted && fromB.IsCompleted, TimeSpan.FromSeconds(30)));
        var ca = TraceAssert.Result(fromA);
        var cb = TraceAssert.Result(fromB);
        Assert.Equal(TcpState.Established, ca.GetInfo().State);
        Assert.Equal(TcpState.Established, cb.GetInfo().State);
        Assert.Equal(49152, ca.LocalEndPoint!.Port);
        Assert.Equal(49152, cb.RemoteEndPoint!.Port);

        // No retransmission was needed: ARP (1 RTT), crossing SYNs, crossing SYN-ACKs.
        Assert.Equal(0, ca.GetInfo().Timeouts + cb.GetInfo().Timeouts);
        Assert.True(clock.NowMicroseconds - start < 100_000, $"took {(clock.NowMicroseconds - start) / 1000} ms");

        // Data flows both ways.
        var buffer = new byte[16];
        var received = cb.ReceiveAsync(buffer).AsTask();
        _ = ca.SendAsync(new byte[] { 1, 2, 3 });
        Assert.True(driver.RunUntil(() => received.IsCompleted, TimeSpan.FromSeconds(5)));
        Assert.Equal(3, TraceAssert.Result(received));
    }

    [Theory]
    [InlineData(false, 536)]
    [InlineData(true, 524)]
    public void Data_segments_respect_the_peer_MSS_less_options(bool timestamps, int expectedPayload)
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(1000, RawPeer.SynOptions(mss: 536, tsVal: timestamps ? 1u : null));
        Assert.Equal(expectedPayload, connection.GetInfo().MaxSegmentSize);
        var sending = connection.SendAsync(TraceAssert.Bytes(2000));
        var seq = iss + 1;
        var full = 2000 / expectedPayload;
        for (var i = 0; i < full; i++)
        {
            var s = peer.Expect(Ack, seq: seq + (uint)(i * expectedPayload), within: TimeSpan.Zero);
            Assert.Equal(expectedPayload, s.Length);
        }

        // The short tail follows at once: Nagle with Minshall's modification only waits for an earlier small segment.
        var tail = peer.Expect(PshAck, seq: seq + (uint)(full * expectedPayload), within: TimeSpan.Zero);
        Assert.Equal(2000 - (full * expectedPayload), tail.Length);
        peer.Send(Ack, seq: 1001, ack: seq + 2000);
        peer.Await(sending, TimeSpan.Zero);
    }

    [Fact]
    public void Window_scaling_is_used_when_both_offer_it()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(1000, RawPeer.SynOptions(windowScale: 2), window: 100); // 100 << 2 = 400 bytes
        var sending = connection.SendAsync(TraceAssert.Bytes(1000));
        var data = peer.Expect(Ack, seq: iss + 1, ack: 1001, within: TimeSpan.Zero); // window-limited: no PSH
        Assert.Equal(400, data.Length);
        Assert.Equal((1 << 20) >> 5, data.Window); // our window, scaled by our shift 5
        peer.ExpectNothing();
        peer.Send(Ack, seq: 1001, ack: iss + 401, window: 1000);
        var rest = peer.Expect(PshAck, seq: iss + 401, within: TimeSpan.Zero);
        Assert.Equal(600, rest.Length);
        peer.Send(Ack, seq: 1001, ack: iss + 1001, window: 1000);
        peer.Await(sending, TimeSpan.Zero);
    }

    [Fact]
    public void Window_scaling_is_off_when_the_peer_does_not_offer_it_passive()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(1000, RawPeer.SynOptions(), window: 400);
        var sending = connection.SendAsync(TraceAssert.Bytes(1000));
        var data = peer.Expect(Ack, seq: iss + 1, ack: 1001, within: TimeSpan.Zero); // window-limited: no PSH
        Assert.Equal(400, data.Length); // the peer's 400 is not scaled
        Assert.Equal(65535, data.Window); // our 1 MiB, unscaled, capped at 16 bits
        peer.Send(Ack, seq: 1001, ack: iss + 401, window: 65535);
        peer.Expect(PshAck, seq: iss + 401, within: TimeSpan.Zero);
        peer.Send(Ack, seq: 1001, ack: iss + 1001, window: 65535);
        peer.Await(sending, TimeSpan.Zero);
    }

    [Fact]
    public void Window_scaling_is_off_when_the_SYN_ACK_does_not_carry_it_active()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenActive(5000, RawPeer.SynOptions(), window: 300);
        var sending = connection.SendAsync(TraceAssert.Bytes(1000));
        var data = peer.Expect(Ack, seq: iss + 1, ack: 5001, within: TimeSpan.Zero);
        Assert.Equal(300, data.Length);
        Assert.Equal(65535, data.Window);
        peer.Send(Ack, seq: 5001, ack: iss + 301, window: 65535);
        peer.Expect(PshAck, seq: iss + 301, within: TimeSpan.Zero);
        peer.Send(Ack, seq: 5001, ack: iss + 1001);
        peer.Await(sending, TimeSpan.Zero);
    }

    [Fact]
    public void Timestamps_are_off_when_the_peer_does_not_offer_them()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(1000, RawPeer.SynOptions());
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        var data = peer.Expect(PshAck, seq: iss + 1, within: TimeSpan.Zero);
        Assert.False(data.Options.HasTimestamp);
        Assert.Equal(1460, connection.GetInfo().MaxSegmentSize);
    }

    [Fact]
    public void Timestamps_are_on_when_both_offer_them_and_echo_the_peer()
    {
        using var peer = new RawPeer();
        var synOptions = RawPeer.SynOptions(tsVal: 100);
        var (connection, iss) = peer.OpenPassive(1000, synOptions);
        var ts = TcpOptions.None;
        ts.HasTimestamp = true;
        ts.TsVal = 200;
        peer.Send(PshAck, seq: 1001, ack: iss + 1, options: ts, payload: [1, 2, 3]);
        var ack = peer.Expect(Ack, ack: 1004, within: TimeSpan.FromMilliseconds(200));
        Assert.True(ack.Options.HasTimestamp);
        Assert.Equal(200u, ack.Options.TsEcr);
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        var data = peer.Expect(PshAck, seq: iss + 1, within: TimeSpan.Zero);
        Assert.True(data.Options.HasTimestamp);
        Assert.Equal(200u, data.Options.TsEcr);
    }
}
