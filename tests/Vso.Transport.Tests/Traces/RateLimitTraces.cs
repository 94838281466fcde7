using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// Replies that network input alone causes are bounded: challenge ACKs per connection and per stack (RFC 5961 §7,
/// CVE-2016-5696), duplicate ACKs for unacceptable segments (Linux tcp_invalid_ratelimit) and RSTs for closed ports
/// (RFC 9293 §3.10.7.1), each over a burst of 1,000 triggering segments in virtual time.
/// </summary>
public sealed class RateLimitTraces
{
    private const uint R = 1001;
    private const int Burst = 1000;

    /// <summary>Takes every segment the stack has sent so far; all must carry <paramref name="flags"/>.</summary>
    private static int Drain(RawPeer peer, TcpFlags flags)
    {
        var count = 0;
        while (peer.Pending > 0)
        {
            var segment = peer.Next(TimeSpan.Zero);
            Assert.True(segment.Flags == flags, $"Expected [{flags}], got {segment}");
            count++;
        }

        return count;
    }

    [Fact]
    public void RFC5961_7_challenge_ACKs_are_limited_per_connection()
    {
        using var peer = new RawPeer();
        peer.OpenPassive();

        // 1,000 in-window RSTs, one every millisecond: one challenge ACK per 500 ms (the first at once).
        for (var i = 0; i < Burst; i++)
        {
            peer.Send(Rst, seq: R + 1 + (uint)i);
            peer.Advance(TimeSpan.FromMilliseconds(1));
        }

        var sent = Drain(peer, Ack);
        Assert.InRange(sent, 2, 3);
        var statistics = peer.Connection!.Statistics;
        Assert.Equal(sent, statistics.ChallengeAcksSent);
        Assert.Equal(Burst - sent, statistics.ChallengeAcksSuppressed);
        Assert.Equal(TcpState.Established, peer.State);

        // The legitimate exchange still works: a RST at RCV.NXT resets.
        peer.Send(Rst, seq: R);
        Assert.Equal(TcpState.Closed, peer.State);
    }

    [Fact]
    public void RFC5961_7_challenge_ACKs_are_limited_per_stack_with_a_randomised_budget()
    {
        // No per-connection limit, a stack-wide one of 10 a second: each second's budget is drawn from [5, 14].
        using var peer = new RawPeer(s =>
        {
            s.ChallengeAckInterval = TimeSpan.Zero;
            s.ChallengeAckLimit = 10;
        });
        peer.Port = 40000;
        peer.OpenPassive();
        peer.Port = 40001;
        peer.OpenPassive();

        // 1,000 in-window SYNs at one instant, alternating between the two connections.
        for (var i = 0; i < Burst; i++)
        {
            peer.Port = (ushort)(40000 + (i % 2));
            peer.Send(Syn, seq: R + 1 + (uint)i, options: RawPeer.SynOptions());
        }

        var sent = Drain(peer, Ack);
        Assert.InRange(sent, 5, 14);
        Assert.Equal(Burst - sent, peer.Stack.Core.Tcp.ChallengeAcksSuppressed);
        var connections = peer.Stack.Core.Tcp.Connections.ToArray();
        Assert.Equal(2, connections.Length);
        Assert.Equal(sent, connections.Sum(c => c.Statistics.ChallengeAcksSent));

        // The next second draws a new budget.
        peer.Advance(TimeSpan.FromSeconds(1));
        peer.Send(Syn, seq: R + 5000, options: RawPeer.SynOptions());
        Assert.Equal(1, Drain(peer, Ack));
    }

    [Fact]
    public void Duplicate_ACKs_for_out_of_window_pure_ACKs_are_limited_per_connection()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive();

        // 1,000 pure ACKs beyond the window, one every millisecond: one duplicate ACK per 500 ms.
        for (var i = 0; i < Burst; i++)
        {
            peer.Send(Ack, seq: R + 200_000, ack: iss + 1);
            peer.Advance(TimeSpan.FromMilliseconds(1));
        }

        var sent = Drain(peer, Ack);
        Assert.InRange(sent, 2, 3);
        Assert.Equal(Burst - sent, peer.Connection!.Statistics.InvalidSegmentAcksSuppressed);

        // Out-of-window data is no ACK loop: always answered (a peer whose ACK was lost learns from it).
        for (var i = 0; i < 3; i++)
        {
            peer.Send(PshAck, seq: R - 100, ack: iss + 1, payload: [1]);
        }

        Assert.Equal(3, Drain(peer, Ack));
    }

    [Fact]
    public void Duplicate_ACKs_for_PAWS_failing_pure_ACKs_are_limited_per_connection()
    {
        using var peer = new RawPeer();
        var (_, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(tsVal: 1000));
        var old = TcpOptions.None;
        old.HasTimestamp = true;
        old.TsVal = 10; // older than TS.Recent (RFC 7323 §5.3 R1)

        // A window that differs from the last one: not a reordered duplicate ACK, which PAWS lets through.
        for (var i = 0; i < Burst; i++)
        {
            peer.Send(Ack, seq: R, ack: iss + 1, window: 1000, options: old);
        }

        Assert.Equal(1, Drain(peer, Ack));
        Assert.Equal(Burst - 1, peer.Connection!.Statistics.InvalidSegmentAcksSuppressed);
    }

    [Fact]
    public void RSTs_for_closed_ports_are_limited_per_stack()
    {
        using var peer = new RawPeer();
        peer.StackPort = 81;

        // 1,000 SYNs at one instant: the burst of 100 is answered.
        for (var i = 0; i < Burst; i++)
        {
            peer.Send(Syn, seq: 100 + (uint)i);
        }

        Assert.Equal(100, Drain(peer, RstAck));
        Assert.Equal(Burst - 100, peer.Stack.Core.Tcp.ResetsSuppressed);

        // Then 1,000 a second: 10 ms later, ten more.
        peer.Advance(TimeSpan.FromMilliseconds(10));
        for (var i = 0; i < Burst; i++)
        {
            peer.Send(Ack, seq: 100, ack: 5000 + (uint)i);
        }

        Assert.Equal(10, Drain(peer, Rst));
        Assert.Equal(110, peer.Stack.Core.Tcp.ResetsSent);
    }
}
