using System.Net;
using Vso.Transport.Api;
using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// Per-connection options (issue 11 item 8): each connection's own copy of the stack's settings, and the socket
/// options an application sets on it, each shown on the wire.
/// </summary>
public sealed class ConnectionOptionTraces
{
    private const uint R = 1001; // the peer's first data sequence number (ISN 1000)

    /// <summary>Active open with the connection's own settings: SYN → SYN-ACK(seq=<paramref name="isn"/>) → ACK.</summary>
    internal static (VsoConnection Connection, TraceSegment Syn) OpenActiveWith(RawPeer peer, TcpSettings? settings, uint isn = 5000, IPEndPoint? local = null)
    {
        var connecting = peer.Stack.ConnectAsync(new IPEndPoint(peer.Remote.ToIPAddress(), peer.Port), local, settings, CancellationToken.None);
        var syn = peer.Expect(Syn, ack: 0);
        peer.StackPort = syn.SourcePort;
        peer.Send(SynAck, seq: isn, ack: syn.Seq + 1, options: RawPeer.SynOptions());
        peer.Expect(Ack, seq: syn.Seq + 1, ack: isn + 1);
        return (peer.Await(connecting, TimeSpan.Zero), syn);
    }

    /// <summary>
    /// Issue 12, connection setup: accepted connections share one copy of the stack's settings instead of a copy each; a
    /// socket option set on one (TCP_NODELAY here, RFC 9293 §3.7.4's Nagle) gives that one its own copy and changes
    /// nothing for the other, on the wire.
    /// </summary>
    [Fact]
    public void Accepted_connections_share_the_settings_until_one_changes_its_own()
    {
        using var peer = new RawPeer(s => s.Nagle = true);
        var (first, firstIss) = peer.OpenPassive();
        peer.Port = 40001;
        var (second, secondIss) = peer.OpenPassive();
        var connections = peer.Stack.Core.Tcp.Connections.OrderBy(c => c.Id.RemotePort).ToArray();
        Assert.Same(connections[0].Settings, connections[1].Settings);

        first.NoDelay = true;
        peer.Pump();
        Assert.NotSame(connections[0].Settings, connections[1].Settings);
        Assert.False(connections[0].Settings.Nagle);
        Assert.True(connections[1].Settings.Nagle);

        // The first sends its second small segment at once; the second holds its own until the first is acknowledged.
        _ = first.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: firstIss + 1, within: TimeSpan.Zero);
        _ = first.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: firstIss + 11, within: TimeSpan.Zero); // before the first is ACKed
        _ = second.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: secondIss + 1, within: TimeSpan.Zero);
        _ = second.SendAsync(TraceAssert.Bytes(10));
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100)); // Nagle holds it: the second still has the shared settings
    }

    [Fact]
    public void Changing_the_stack_settings_later_reaches_no_open_connection_only_new_ones()
    {
        // Nagle (RFC 9293 §3.7.4) makes the copy visible: a second small segment is held while the first is unacknowledged.
        using var peer = new RawPeer(s => s.Nagle = true);
        var (passive, iss) = peer.OpenPassive();
        var p = iss + 1;
        peer.Port = 40001;
        var (active, activeIss) = peer.OpenActive();
        var a = activeIss + 1;
        var activePort = peer.StackPort;

        peer.Settings.Nagle = false; // the stack's own settings object, changed while both are open

        _ = passive.SendAsync(TraceAssert.Bytes(10));
        Assert.Equal(80, peer.Expect(PshAck, seq: p, within: TimeSpan.Zero).SourcePort);
        _ = passive.SendAsync(TraceAssert.Bytes(10));
        _ = active.SendAsync(TraceAssert.Bytes(10));
        Assert.Equal(activePort, peer.Expect(PshAck, seq: a, within: TimeSpan.Zero).SourcePort);
        _ = active.SendAsync(TraceAssert.Bytes(10));
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100)); // both still hold their second segment: Nagle is on in their copies
        Assert.False(passive.NoDelay);
        Assert.False(active.NoDelay);

        // A connection opened now starts from the changed settings.
        peer.Port = 40002;
        peer.StackPort = 80;
        var (fresh, freshIss) = peer.OpenPassive();
        Assert.True(fresh.NoDelay);
        _ = fresh.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: freshIss + 1, within: TimeSpan.Zero);
        _ = fresh.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: freshIss + 11, within: TimeSpan.Zero); // before the first is ACKed
    }

    [Fact]
    public void NoDelay_sends_what_Nagle_held_and_every_later_small_segment_before_the_first_is_ACKed()
    {
        // RFC 9293 §3.7.4 (MUST-17): an application must be able to turn Nagle off on one connection.
        using var peer = new RawPeer(s => s.Nagle = true);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.ExpectNothing(TimeSpan.FromMilliseconds(10));

        connection.NoDelay = true;
        Assert.Equal(10, peer.Expect(PshAck, seq: s + 10, within: TimeSpan.Zero).Length);
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        Assert.Equal(10, peer.Expect(PshAck, seq: s + 20, within: TimeSpan.Zero).Length); // nothing was ACKed yet
    }

    [Fact]
    public void ReceiveBufferSize_at_connect_is_the_SYN_window_and_raised_later_is_announced_at_once()
    {
        // RFC 9293 §3.8.6.2.2: a window grown by at least min(buffer/2, MSS) is announced; RFC 7323 §2.2: the SYN's is unscaled.
        using var peer = new RawPeer();
        var (connection, syn) = OpenActiveWith(peer, new TcpSettings { ReceiveBufferSize = 4096, WindowScaling = false });
        Assert.Equal(4096, syn.Window);
        Assert.Equal(4096, connection.ReceiveBufferSize);

        connection.ReceiveBufferSize = 32768;
        var update = peer.Expect(Ack, seq: syn.Seq + 1, ack: 5001, within: TimeSpan.Zero);
        Assert.Equal(32768, update.Window);

        // The peer may now fill the larger window.
        peer.Send(PshAck, seq: 5001, ack: syn.Seq + 1, payload: TraceAssert.Bytes(1460));
        peer.Send(PshAck, seq: 5001 + 1460, ack: syn.Seq + 1, payload: TraceAssert.Bytes(1460));
        Assert.Equal(32768 - 2920, peer.Expect(Ack, ack: 5001 + 2920, within: TimeSpan.Zero).Window);
    }

    [Fact]
    public void ReceiveBufferSize_never_shrinks_the_window_already_offered()
    {
        // RFC 9293 §3.8.6 (SHLD-14): the right edge offered is not moved back.
        using var peer = new RawPeer(s => s.ReceiveBufferSize = 8192);
        var (connection, iss) = peer.OpenPassive();
        connection.ReceiveBufferSize = 2048;
        for (var sent = 0; sent < 8000; sent += 1000)
        {
            peer.Send(Ack, seq: R + (uint)sent, ack: iss + 1, payload: TraceAssert.Bytes(1000)); // all of the window offered is still taken
        }

        peer.Advance(TimeSpan.FromMilliseconds(200));
        var ack = peer.Next(TimeSpan.Zero);
        while (peer.Pending > 0)
        {
            ack = peer.Next(TimeSpan.Zero);
        }

        Assert.Equal(R + 8000, ack.Ack);
        Assert.Equal(192, ack.Window);

        // Once read, the smaller buffer is in force: its window reaches beyond the edge offered before, never behind it.
        Assert.Equal(8000, peer.Read(connection).Length);
        Assert.Equal(2048, peer.Expect(Ack, ack: R + 8000, within: TimeSpan.Zero).Window); // the window update
        peer.Send(PshAck, seq: R + 8000, ack: iss + 1, payload: TraceAssert.Bytes(100));
        Assert.Equal(2048 - 100, peer.Expect(Ack, ack: R + 8100, within: TimeSpan.FromMilliseconds(200)).Window);
    }

    [Fact]
    public void KeepAlive_set_on_an_open_connection_probes_after_the_idle_time_and_fails_it_when_unanswered()
    {
        // RFC 9293 §3.8.4, RFC 1122 §4.2.3.6: SEG.SEQ = SND.NXT - 1, no data; off by default.
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        var lastHeard = peer.Now;
        peer.ExpectNothing(TimeSpan.FromSeconds(5));

        connection.KeepAliveIdle = TimeSpan.FromSeconds(10);
        connection.KeepAliveInterval = TimeSpan.FromSeconds(2);
        connection.KeepAliveProbes = 2;
        connection.KeepAlive = true;

        var first = peer.Expect(Ack, seq: s - 1, ack: R);
        Assert.Equal(TimeSpan.FromSeconds(10), first.At - lastHeard); // counted from the peer's last segment
        var second = peer.Expect(Ack, seq: s - 1, ack: R);
        Assert.Equal(TimeSpan.FromSeconds(2), second.At - first.At);
        peer.Advance(TimeSpan.FromSeconds(2));
        Assert.True(connection.Closed.IsCompleted);
        Assert.Equal(TcpError.TimedOut, connection.Error!.Error);
        Assert.Equal(TimeSpan.FromSeconds(14), peer.Now - lastHeard); // the probe count reached, one interval after the last
    }

    [Theory]
    [InlineData(0, 15)]  // one probe (at 10 s), unanswered for an interval: the probe count ends it
    [InlineData(17, 20)] // the user timeout replaces the count: probes at 10 and 15 s, given up at the first probe past 17 s
    public void UserTimeout_decides_instead_of_the_keepalive_probe_count(int userTimeoutSeconds, int endSeconds)
    {
        // RFC 5482 §3.3 and Linux's tcp_keepalive_timer: with TCP_USER_TIMEOUT set, a keepalive-probed peer is given up
        // once it has been silent for the user timeout, whatever TCP_KEEPCNT says.
        using var peer = new RawPeer(s =>
        {
            s.Keepalive = true;
            s.KeepaliveIdle = TimeSpan.FromSeconds(10);
            s.KeepaliveInterval = TimeSpan.FromSeconds(5);
            s.KeepaliveProbes = 1;
            s.UserTimeout = TimeSpan.FromSeconds(userTimeoutSeconds);
        });
        var (connection, iss) = peer.OpenPassive();
        var lastHeard = peer.Now;
        Assert.True(peer.RunUntil(() => connection.Closed.IsCompleted, TimeSpan.FromMinutes(1)));
        Assert.Equal(TimeSpan.FromSeconds(endSeconds), peer.Now - lastHeard);
        Assert.Equal(TcpError.TimedOut, connection.Error!.Error);
        Assert.Equal((endSeconds - 10) / 5, peer.Pending); // the probes, each SEG.SEQ = SND.NXT - 1
        Assert.Equal(iss, peer.Next(TimeSpan.Zero).Seq);
    }

    [Fact]
    public void UserTimeout_fails_the_connection_when_data_stays_unacknowledged_that_long()
    {
        // RFC 5482 (TCP_USER_TIMEOUT), RFC 9293 §3.8.3 R2 as the application sets it: 15 retransmissions would take minutes.
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        connection.UserTimeout = TimeSpan.FromSeconds(3);
        var sending = connection.SendAsync(TraceAssert.Bytes(100));
        var sent = peer.Expect(PshAck, seq: iss + 1, within: TimeSpan.Zero);
        Assert.True(peer.RunUntil(() => sending.IsCompleted, TimeSpan.FromSeconds(10)));
        Assert.Equal(TimeSpan.FromSeconds(3), peer.Now - sent.At);
        TraceAssert.FailedWith(sending, TcpError.TimedOut);
        peer.Discard(); // the retransmissions before it
        peer.ExpectNothing(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void UserTimeout_counts_from_the_last_progress_not_from_the_first_send()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.UserTimeout = TimeSpan.FromSeconds(3);
        var first = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        peer.Advance(TimeSpan.FromSeconds(2));
        var second = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Send(Ack, seq: R, ack: s + 100); // progress at 2 s
        var progressAt = peer.Now;
        peer.Discard();
        Assert.True(peer.RunUntil(() => second.IsCompleted, TimeSpan.FromSeconds(10)));
        Assert.True(first.IsCompletedSuccessfully);
        TraceAssert.FailedWith(second, TcpError.TimedOut);
        Assert.Equal(TimeSpan.FromSeconds(3), peer.Now - progressAt);
    }

    [Fact]
    public void Linger_zero_closes_with_RST_and_drops_the_queued_data()
    {
        // SO_LINGER {on, 0}: CLOSE becomes ABORT (RFC 9293 §3.10.5): RST, every pending send fails.
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive(window: 100);
        var s = iss + 1;
        var sending = connection.SendAsync(TraceAssert.Bytes(300));
        peer.Expect(Ack, seq: s, within: TimeSpan.Zero); // the peer's window takes 100
        connection.Linger = TimeSpan.Zero;
        var closing = connection.CloseAsync();
        peer.Expect(RstAck, seq: s + 100, within: TimeSpan.Zero);
        Assert.True(closing.IsCompleted);
        TraceAssert.FailedWith(sending, TcpError.Aborted);
        peer.ExpectNothing(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void Linger_completes_the_close_once_the_peer_acknowledged_everything()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.Linger = TimeSpan.FromSeconds(2);
        _ = connection.SendAsync(TraceAssert.Bytes(100));
        peer.Expect(PshAck, seq: s, within: TimeSpan.Zero);
        var closing = connection.CloseAsync();
        peer.Expect(FinAck, seq: s + 100, within: TimeSpan.Zero);
        peer.Advance(TimeSpan.FromMilliseconds(50));
        Assert.False(closing.IsCompleted);
        peer.Send(Ack, seq: R, ack: s + 101); // data and FIN acknowledged; the peer has not closed its side
        Assert.True(closing.IsCompletedSuccessfully);
        Assert.Equal(TcpState.FinWait2, peer.State);
    }

    [Fact]
    public void Linger_resets_the_connection_when_the_time_runs_out_first()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive(window: 0);
        var s = iss + 1;
        connection.Linger = TimeSpan.FromSeconds(2);
        var sending = connection.SendAsync(TraceAssert.Bytes(100)); // a zero window holds it
        var closing = connection.CloseAsync();
        var started = peer.Now;
        Assert.True(peer.RunUntil(() => closing.IsCompleted, TimeSpan.FromSeconds(10)));
        Assert.Equal(TimeSpan.FromSeconds(2), peer.Now - started);
        TraceAssert.FailedWith(closing, TcpError.TimedOut);
        TraceAssert.FailedWith(sending, TcpError.TimedOut);
        TraceSegment last;
        do
        {
            last = peer.Next(TimeSpan.Zero); // zero-window probes, then the RST
        }
        while (last.Flags != RstAck);

        Assert.Equal(s, last.Seq);
    }

    [Fact]
    public void MssClamp_at_connect_is_announced_in_the_SYN_and_bounds_every_segment()
    {
        // TCP_MAXSEG: RFC 9293 §3.7.1, the MSS option carries it; RFC 6691: the payload never exceeds it.
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, syn) = OpenActiveWith(peer, new TcpSettings { MssClamp = 500, Nagle = false });
        Assert.Equal(500, syn.Options.Mss);
        _ = connection.SendAsync(TraceAssert.Bytes(1200));
        Assert.Equal(500, peer.Expect(Ack, seq: syn.Seq + 1, within: TimeSpan.Zero).Length);
        Assert.Equal(500, peer.Expect(Ack, seq: syn.Seq + 501, within: TimeSpan.Zero).Length);
        Assert.Equal(200, peer.Expect(PshAck, seq: syn.Seq + 1001, within: TimeSpan.Zero).Length);
    }

    [Fact]
    public void MssClamp_set_on_an_open_connection_cuts_later_segments()
    {
        using var peer = new RawPeer(s => s.Nagle = false);
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        _ = connection.SendAsync(TraceAssert.Bytes(1460));
        Assert.Equal(1460, peer.Expect(PshAck, seq: s, within: TimeSpan.Zero).Length);
        connection.MssClamp = 600;
        _ = connection.SendAsync(TraceAssert.Bytes(1000));
        Assert.Equal(600, peer.Expect(Ack, seq: s + 1460, within: TimeSpan.Zero).Length);
        Assert.Equal(400, peer.Expect(PshAck, seq: s + 2060, within: TimeSpan.Zero).Length);
    }

    [Fact]
    public void Setters_refuse_values_that_cannot_work_and_name_the_key()
    {
        using var peer = new RawPeer();
        var (connection, _) = peer.OpenPassive();
        Assert.Contains("ReceiveBufferSize", Assert.Throws<ArgumentException>(() => connection.ReceiveBufferSize = 10).Message);
        Assert.Contains("MssClamp", Assert.Throws<ArgumentException>(() => connection.MssClamp = 20).Message);
        Assert.Contains("UserTimeout", Assert.Throws<ArgumentException>(() => connection.UserTimeout = TimeSpan.FromSeconds(-1)).Message);
        Assert.Equal(1 << 20, connection.ReceiveBufferSize); // unchanged
    }
}
