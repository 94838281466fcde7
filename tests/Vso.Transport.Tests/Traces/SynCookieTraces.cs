using System.Diagnostics.Metrics;
using System.Text;
using Vso.Transport.Api;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// SYN cookies and the listener's two queues (RFC 4987 §3.6 cookies, §3.4 oldest drop; Linux's half-open and accept
/// queues): a cookie SYN-ACK keeps no state, its returning ACK builds the connection with what the cookie kept.
/// </summary>
public sealed class SynCookieTraces
{
    private static TcpOptions AckTimestamps(uint tsVal, uint tsEcr)
    {
        var o = TcpOptions.None;
        o.HasTimestamp = true;
        o.TsVal = tsVal;
        o.TsEcr = tsEcr;
        return o;
    }

    [Fact]
    public void RFC4987_3_6_Always_mode_answers_the_first_SYN_with_a_cookie_and_keeps_no_state()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 1001);
        Assert.Empty(peer.Stack.Core.Tcp.Connections);
    }

    [Fact]
    public void RFC4987_3_6_cookie_with_timestamps_keeps_window_scale_and_SACK_and_data_flows_both_ways()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);
        var accepted = listener.AcceptAsync().AsTask();

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions(mss: 1460, windowScale: 7, sackPermitted: true, tsVal: 777));
        var synAck = peer.Expect(SynAck, ack: 1001);
        Assert.Empty(peer.Stack.Core.Tcp.Connections);
        Assert.Equal(1460, synAck.Options.Mss);
        Assert.Equal(5, synAck.Options.WindowScale); // the shift the connection will use (1 MiB buffer), as without cookies
        Assert.True(synAck.Options.SackPermitted);
        Assert.True(synAck.Options.HasTimestamp);
        Assert.Equal(777u, synAck.Options.TsEcr);
        Assert.Equal(65535, synAck.Window);

        // The ACK echoes the TSval that carries the options (RFC 7323 §3.2) and advertises 1000 << 7.
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1, window: 1000, options: AckTimestamps(778, synAck.Options.TsVal));
        peer.ExpectNothing();
        var connection = peer.Await(accepted, TimeSpan.Zero);
        var tcp = Assert.Single(peer.Stack.Core.Tcp.Connections);
        Assert.Equal(TcpState.Established, tcp.State);
        Assert.True(tcp.SackPermitted);
        Assert.True(tcp.TimestampsEnabled);
        Assert.Equal(1000u << 7, tcp.Sender.PeerWindow); // the peer's window scale survived the cookie
        Assert.Equal(1460 - 12, tcp.MaxSegmentSize);
        Assert.Equal(synAck.Seq + 1, connection.GetInfo().SendNext);

        // Peer to stack, out of order first: the ACK reports the hole with a SACK block (RFC 2018 §4), so SACK is in force.
        peer.Send(PshAck, seq: 1006, ack: synAck.Seq + 1, window: 1000, options: AckTimestamps(779, synAck.Options.TsVal), payload: "world"u8.ToArray());
        var sackAck = peer.Expect(Ack, ack: 1001);
        Assert.Equal(1, sackAck.Options.SackBlockCount);
        Assert.Equal(new SackBlock(1006, 1011), sackAck.Options.GetSackBlock(0));
        Assert.True(sackAck.Options.HasTimestamp);
        Assert.Equal(778u, sackAck.Options.TsEcr); // RFC 7323 §4.3: an out-of-order segment does not update TS.Recent
        Assert.True(SequenceNumber.Ge(sackAck.Options.TsVal, synAck.Options.TsVal)); // TSvals stay monotonic after the cookie

        peer.Send(PshAck, seq: 1001, ack: synAck.Seq + 1, window: 1000, options: AckTimestamps(780, synAck.Options.TsVal), payload: "hello"u8.ToArray());
        peer.Expect(Ack, ack: 1011, within: TimeSpan.FromSeconds(1));
        Assert.Equal("helloworld", Encoding.ASCII.GetString(peer.Read(connection)));

        // Stack to peer.
        var sending = connection.SendAsync("reply"u8.ToArray());
        var data = peer.Expect(PshAck, seq: synAck.Seq + 1, ack: 1011);
        Assert.Equal("reply", Encoding.ASCII.GetString(data.Payload));
        peer.Send(Ack, seq: 1011, ack: synAck.Seq + 6, window: 1000, options: AckTimestamps(781, data.Options.TsVal));
        peer.Await(sending, TimeSpan.Zero);
    }

    [Fact]
    public void RFC4987_3_6_cookie_without_timestamps_offers_neither_window_scale_nor_SACK_and_keeps_the_MSS_from_its_table()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);
        var accepted = listener.AcceptAsync().AsTask();

        // A 1400-byte MSS is carried as the table's 1300 (rounded down, never above what the peer can take).
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions(mss: 1400, windowScale: 7, sackPermitted: true));
        var synAck = peer.Expect(SynAck, ack: 1001);
        Assert.Equal(1460, synAck.Options.Mss);
        Assert.Equal(-1, synAck.Options.WindowScale);
        Assert.False(synAck.Options.SackPermitted);
        Assert.False(synAck.Options.HasTimestamp);

        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1, window: 4000);
        var connection = peer.Await(accepted, TimeSpan.Zero);
        var tcp = Assert.Single(peer.Stack.Core.Tcp.Connections);
        Assert.Equal(TcpState.Established, tcp.State);
        Assert.False(tcp.SackPermitted);
        Assert.False(tcp.TimestampsEnabled);
        Assert.Equal(1300, tcp.MaxSegmentSize);
        Assert.Equal(4000u, tcp.Sender.PeerWindow); // no scaling

        peer.Send(PshAck, seq: 1001, ack: synAck.Seq + 1, window: 4000, payload: "ping"u8.ToArray());
        peer.Expect(Ack, ack: 1005, within: TimeSpan.FromSeconds(1));
        Assert.Equal("ping", Encoding.ASCII.GetString(peer.Read(connection)));

        // 2000 bytes leave in segments of the cookie's MSS.
        var sending = connection.SendAsync(TraceAssert.Bytes(2000));
        var first = NextData(peer);
        Assert.Equal(1300, first.Length);
        Assert.Equal(synAck.Seq + 1, first.Seq);
        var second = NextData(peer);
        Assert.Equal(700, second.Length);
        peer.Send(Ack, seq: 1005, ack: synAck.Seq + 2001, window: 4000);
        peer.Await(sending, TimeSpan.Zero);
    }

    [Fact]
    public void RFC4987_3_6_data_in_the_cookie_ACK_is_delivered()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);
        var accepted = listener.AcceptAsync().AsTask();

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, ack: 1001);
        peer.Send(PshAck, seq: 1001, ack: synAck.Seq + 1, payload: "GET /"u8.ToArray());
        var connection = peer.Await(accepted, TimeSpan.Zero);
        peer.Expect(Ack, ack: 1006, within: TimeSpan.FromSeconds(1));
        Assert.Equal("GET /", Encoding.ASCII.GetString(peer.Read(connection)));
    }

    [Fact]
    public void RFC4987_3_6_a_cookie_older_than_two_minutes_is_rejected_with_RST()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, ack: 1001);
        peer.Advance(TimeSpan.FromMinutes(2) + TimeSpan.FromSeconds(1));

        // RFC 9293 §3.10.7.2: an ACK to a listener that opens nothing is answered <SEQ=SEG.ACK><CTL=RST>.
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        peer.Expect(Rst, seq: synAck.Seq + 1);
        Assert.Empty(peer.Stack.Core.Tcp.Connections);
        Assert.False(listener.TryAccept(out _));
    }

    [Fact]
    public void RFC4987_3_6_a_cookie_within_its_lifetime_is_accepted_after_a_minute()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, ack: 1001);
        peer.Advance(TimeSpan.FromSeconds(61));
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        peer.ExpectNothing();
        Assert.True(listener.TryAccept(out _));
    }

    /// <summary>The secret is replaced every ten minutes; a cookie made just before stays valid under the previous one.</summary>
    [Fact]
    public void RFC4987_3_6_the_secret_rotates_and_a_cookie_made_before_the_rotation_is_still_accepted()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);
        var handshake = peer.Stack.Core.Tcp.CookieHandshake;

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 1001);
        peer.Advance(TimeSpan.FromMinutes(9) + TimeSpan.FromSeconds(50));
        peer.Port = 40001;
        peer.Send(Syn, seq: 3000, options: RawPeer.SynOptions());
        var before = peer.Expect(SynAck, ack: 3001);
        Assert.Equal(0, handshake.SecretRotations);

        peer.Advance(TimeSpan.FromSeconds(20));
        peer.Port = 40002;
        peer.Send(Syn, seq: 5000, options: RawPeer.SynOptions());
        var after = peer.Expect(SynAck, ack: 5001);
        Assert.Equal(1, handshake.SecretRotations);

        peer.Port = 40001;
        peer.Send(Ack, seq: 3001, ack: before.Seq + 1);
        peer.ExpectNothing();
        peer.Port = 40002;
        peer.Send(Ack, seq: 5001, ack: after.Seq + 1);
        peer.ExpectNothing();
        Assert.True(listener.TryAccept(out _));
        Assert.True(listener.TryAccept(out _));
    }

    [Fact]
    public void RFC4987_3_6_a_forged_cookie_ACK_is_rejected_with_RST_and_opens_nothing()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var listener = peer.Stack.Listen(80);

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, ack: 1001);

        // The acknowledgment is one off.
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 2);
        peer.Expect(Rst, seq: synAck.Seq + 2);

        // The right cookie from another 4-tuple.
        peer.Port = 40001;
        peer.Send(Ack, seq: 1001, ack: synAck.Seq + 1);
        peer.Expect(Rst, seq: synAck.Seq + 1);

        // The right cookie with another peer ISN.
        peer.Port = 40000;
        peer.Send(Ack, seq: 5001, ack: synAck.Seq + 1);
        peer.Expect(Rst, seq: synAck.Seq + 1);

        Assert.Empty(peer.Stack.Core.Tcp.Connections);
        Assert.False(listener.TryAccept(out _));
    }

    [Fact]
    public void RFC4987_3_6_Auto_mode_keeps_state_until_the_half_open_queue_is_full_then_sends_cookies()
    {
        using var peer = new RawPeer(s => s.MaxHalfOpen = 2);
        using var metrics = new TcpMetricsProbe(peer.Stack);
        using var listener = peer.Stack.Listen(80);

        peer.Port = 40001;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 1001);
        peer.Port = 40002;
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 2001);
        Assert.Equal(2, peer.Stack.Core.Tcp.ConnectionCount);
        Assert.Equal(0, metrics["vso.tcp.syn_cookies_sent"]);

        // The queue is full: a cookie, no third entry.
        peer.Port = 40003;
        peer.Send(Syn, seq: 3000, options: RawPeer.SynOptions());
        var cookie = peer.Expect(SynAck, ack: 3001);
        Assert.Equal(2, peer.Stack.Core.Tcp.ConnectionCount);
        Assert.Equal(1, metrics["vso.tcp.syn_cookies_sent"]);

        peer.Send(Ack, seq: 3001, ack: cookie.Seq + 1);
        peer.ExpectNothing();
        Assert.True(listener.TryAccept(out var accepted));
        Assert.Equal(40003, accepted.RemoteEndPoint!.Port);
        Assert.Equal(1, metrics["vso.tcp.syn_cookies_accepted"]);

        // A forged one while cookies are in use is counted as rejected (and answered with RST).
        peer.Port = 40004;
        peer.Send(Ack, seq: 4001, ack: 12345);
        peer.Expect(Rst, seq: 12345);
        Assert.Equal(1, metrics["vso.tcp.syn_cookies_rejected"]);
    }

    [Fact]
    public void RFC4987_3_6_Auto_mode_does_not_look_for_cookies_when_none_was_sent()
    {
        using var peer = new RawPeer();
        using var metrics = new TcpMetricsProbe(peer.Stack);
        using var listener = peer.Stack.Listen(80);

        peer.Send(Ack, seq: 1001, ack: 12345);
        peer.Expect(Rst, seq: 12345);
        Assert.Equal(0, metrics["vso.tcp.syn_cookies_rejected"]);
    }

    [Fact]
    public void RFC4987_3_4_Never_mode_evicts_the_oldest_half_open_entry_to_admit_a_new_SYN()
    {
        using var peer = new RawPeer(s =>
        {
            s.MaxHalfOpen = 2;
            s.SynCookies = SynCookieMode.Never;
        });
        using var metrics = new TcpMetricsProbe(peer.Stack);
        using var listener = peer.Stack.Listen(80);

        peer.Port = 40001;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var oldest = peer.Expect(SynAck, ack: 1001);
        peer.Port = 40002;
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        var second = peer.Expect(SynAck, ack: 2001);
        peer.Port = 40003;
        peer.Send(Syn, seq: 3000, options: RawPeer.SynOptions());
        var third = peer.Expect(SynAck, ack: 3001);
        peer.ExpectNothing(); // eviction is silent

        Assert.Equal(2, peer.Stack.Core.Tcp.ConnectionCount);
        Assert.DoesNotContain(peer.Stack.Core.Tcp.Connections, c => c.Id.RemotePort == 40001);
        Assert.Equal(1, metrics["vso.tcp.half_open_evicted"]);

        // The evicted one's ACK finds nothing (no cookies in this mode): RST.
        peer.Port = 40001;
        peer.Send(Ack, seq: 1001, ack: oldest.Seq + 1);
        peer.Expect(Rst, seq: oldest.Seq + 1);

        // The others complete.
        peer.Port = 40002;
        peer.Send(Ack, seq: 2001, ack: second.Seq + 1);
        peer.Port = 40003;
        peer.Send(Ack, seq: 3001, ack: third.Seq + 1);
        peer.ExpectNothing();
        Assert.True(listener.TryAccept(out _));
        Assert.True(listener.TryAccept(out _));
    }

    [Fact]
    public void RFC4987_3_6_a_full_accept_queue_drops_the_cookie_ACK_until_room_is_made()
    {
        using var peer = new RawPeer(s => s.SynCookies = SynCookieMode.Always);
        using var metrics = new TcpMetricsProbe(peer.Stack);
        using var listener = peer.Stack.Listen(80, backlog: 1);

        peer.Port = 40001;
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        var first = peer.Expect(SynAck, ack: 1001);
        peer.Port = 40002;
        peer.Send(Syn, seq: 2000, options: RawPeer.SynOptions());
        var second = peer.Expect(SynAck, ack: 2001);

        peer.Port = 40001;
        peer.Send(Ack, seq: 1001, ack: first.Seq + 1);

        // The accept queue (1) is full: the second cookie ACK is dropped without a word, and counted.
        peer.Port = 40002;
        peer.Send(Ack, seq: 2001, ack: second.Seq + 1);
        peer.ExpectNothing();
        Assert.Equal(1, peer.Stack.Core.Tcp.ConnectionCount);
        Assert.Equal(1, metrics["vso.tcp.accept_queue_overflows"]);

        // Accepting makes room; the client's retransmitted ACK carries the same cookie.
        Assert.True(listener.TryAccept(out _));
        peer.Send(Ack, seq: 2001, ack: second.Seq + 1);
        peer.ExpectNothing();
        Assert.True(listener.TryAccept(out var accepted));
        Assert.Equal(40002, accepted.RemoteEndPoint!.Port);
    }

    [Fact]
    public void Half_open_entries_get_fewer_SYN_ACK_retransmissions_while_the_queue_is_over_half_full()
    {
        using var peer = new RawPeer(s =>
        {
            s.MaxHalfOpen = 4;
            s.SynCookies = SynCookieMode.Never;
        });
        using var listener = peer.Stack.Listen(80);

        // Three of four: above half.
        for (ushort port = 40001; port <= 40003; port++)
        {
            peer.Port = port;
            peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        }

        peer.Advance(TimeSpan.FromSeconds(30));
        var synAcks = new List<TraceSegment>();
        while (peer.Pending > 0)
        {
            var s = peer.Next();
            if (s.DestinationPort == 40001)
            {
                synAcks.Add(s);
            }
        }

        // The first SYN-ACK and TcpListenerCore.SynAckRetriesUnderPressure retransmissions (exponential backoff from the
        // initial RTO, RFC 6298 §5.5), then the entry ends: seconds, not the ~2 minutes of MaxSynRetransmissions.
        Assert.Equal(1 + TcpListenerCore.SynAckRetriesUnderPressure, synAcks.Count);
        Assert.All(synAcks, s => Assert.Equal(SynAck, s.Flags));
        Assert.True(synAcks[^1].At < TimeSpan.FromSeconds(10), $"last SYN-ACK at {synAcks[^1].At}");
        Assert.DoesNotContain(peer.Stack.Core.Tcp.Connections, c => c.Id.RemotePort == 40001);
    }

    [Fact]
    public void A_lone_half_open_entry_keeps_the_configured_SYN_ACK_retransmissions()
    {
        using var peer = new RawPeer(s => s.MaxHalfOpen = 4);
        using var listener = peer.Stack.Listen(80);

        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions());
        peer.Advance(TimeSpan.FromSeconds(30));
        Assert.True(peer.Pending > 1 + TcpListenerCore.SynAckRetriesUnderPressure);
        Assert.Equal(TcpState.SynReceived, peer.State);
    }

    [Fact]
    public void RFC4987_a_flood_of_10000_spoofed_SYNs_keeps_the_half_open_queue_bounded_and_a_real_client_still_connects()
    {
        const int maxHalfOpen = 128;
        using var peer = new RawPeer(s =>
        {
            s.MaxHalfOpen = maxHalfOpen;
            s.ReceiveBufferSize = 64 * 1024; // each half-open entry holds a receive buffer: keep the test's memory small
        });
        using var metrics = new TcpMetricsProbe(peer.Stack);
        using var listener = peer.Stack.Listen(80);
        var tcp = peer.Stack.Core.Tcp;
        var maxSeen = 0;
        VsoConnection? client = null;

        for (var i = 0; i < 10_000; i++)
        {
            // Spoofed SYNs from ports whose owner never answers: 1000 per virtual second.
            peer.Port = (ushort)(10_000 + i);
            peer.Send(Syn, seq: (uint)(i * 7919), options: RawPeer.SynOptions(windowScale: 7, sackPermitted: true, tsVal: (uint)i));
            if (i % 100 == 99)
            {
                peer.Advance(TimeSpan.FromMilliseconds(100));
                peer.Discard();
            }

            maxSeen = Math.Max(maxSeen, tcp.Connections.Count(c => c.State == TcpState.SynReceived));
            if (i == 5_000)
            {
                client = Connect(peer, listener);
            }
        }

        Assert.True(maxSeen <= maxHalfOpen, $"{maxSeen} half-open connections");
        Assert.True(metrics["vso.tcp.syn_cookies_sent"] > 9_000);
        Assert.Equal(1, metrics["vso.tcp.syn_cookies_accepted"]);
        Assert.NotNull(client);
        Assert.Equal(TcpState.Established, client.GetInfo().State);

        static VsoConnection Connect(RawPeer peer, VsoListener listener)
        {
            peer.Discard();
            peer.Port = 40000;
            peer.Send(Syn, seq: 424242, options: RawPeer.SynOptions(windowScale: 7, sackPermitted: true, tsVal: 99));
            var synAck = peer.Expect(SynAck, ack: 424243);
            peer.Send(Ack, seq: 424243, ack: synAck.Seq + 1, options: AckTimestamps(100, synAck.Options.TsVal));
            Assert.True(listener.TryAccept(out var connection));
            peer.Send(PshAck, seq: 424243, ack: synAck.Seq + 1, options: AckTimestamps(101, synAck.Options.TsVal), payload: "hi"u8.ToArray());
            peer.RunUntil(() => connection.GetInfo().ReceiveNext == 424245, TimeSpan.FromSeconds(1));
            Assert.Equal("hi", Encoding.ASCII.GetString(peer.Read(connection)));
            return connection;
        }
    }

    /// <summary>The next segment that carries data (window updates and other pure ACKs are skipped).</summary>
    private static TraceSegment NextData(RawPeer peer)
    {
        while (true)
        {
            var s = peer.Next();
            if (s.Length > 0)
            {
                return s;
            }
        }
    }

    /// <summary>Sums the TCP counters of one stack (its own meter: other tests' stacks are not counted).</summary>
    private sealed class TcpMetricsProbe : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Dictionary<string, long> _totals = [];

        public TcpMetricsProbe(VsoStack stack)
        {
            var meter = stack.Core.Tcp.Metrics.SynCookiesSent.Meter;
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == meter)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
            {
                lock (_totals)
                {
                    _totals[instrument.Name] = this[instrument.Name] + value;
                }
            });
            _listener.Start();
        }

        public long this[string name]
        {
            get
            {
                lock (_totals)
                {
                    return _totals.TryGetValue(name, out var v) ? v : 0;
                }
            }
        }

        public void Dispose() => _listener.Dispose();
    }
}
