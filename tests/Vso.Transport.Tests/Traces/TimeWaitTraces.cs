using Vso.Transport.Api;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// TIME-WAIT kept as a compact entry (RFC 9293 §3.6.1; issue 12, connection setup): the connection leaves the table as it
/// enters TIME-WAIT, and the entry answers the 4-tuple's segments as the connection did.
/// </summary>
public sealed class TimeWaitTraces
{
    private const uint R = 1001; // the peer's first data sequence number (ISN 1000)

    [Fact]
    public void TIME_WAIT_keeps_an_entry_not_the_connection_and_the_application_sees_it_closed()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        var (connection, s) = CloseIntoTimeWait(peer);

        Assert.Empty(peer.Stack.Core.Tcp.Connections);
        Assert.Equal(1, peer.Stack.Core.Tcp.TimeWait.Count);
        Assert.Equal(1, peer.Stack.ConnectionCount);
        Assert.Equal(TcpState.Closed, connection.GetInfo().State);
        Assert.Equal(1, ObserveTimeWait(peer));

        // §3.10.7.4 eighth check, TIME-WAIT: a retransmitted FIN is acknowledged from the entry.
        peer.Send(FinAck, seq: R, ack: s);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
    }

    /// <summary>
    /// RFC 9293 §3.10.7.4 second check with RFC 5961 §3.2: an in-window RST away from RCV.NXT gets a challenge ACK and the
    /// entry stays; one at RCV.NXT ends it (the stack does not apply RFC 1337's TIME-WAIT protection, as before).
    /// </summary>
    [Fact]
    public void RST_in_TIME_WAIT_gets_a_challenge_ACK_unless_at_RCV_NXT_where_it_ends_the_entry()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        var (_, s) = CloseIntoTimeWait(peer);

        peer.Send(Rst, seq: R + 1 + 100);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        // Out of the window: dropped without a word.
        peer.Send(Rst, seq: R - 10);
        peer.ExpectNothing();
        Assert.Equal(TcpState.TimeWait, peer.State);

        peer.Send(Rst, seq: R + 1);
        peer.ExpectNothing();
        Assert.Equal(0, peer.Stack.ConnectionCount);
    }

    /// <summary>
    /// RFC 5961 §5.2: an ACK of data never sent is answered with a challenge ACK, and §7's limit carries over from the
    /// connection into TIME-WAIT: a second one within the interval (500 ms) is not answered.
    /// </summary>
    [Fact]
    public void ACK_of_unsent_data_in_TIME_WAIT_gets_a_challenge_ACK_at_most_once_per_interval()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        var (_, s) = CloseIntoTimeWait(peer);

        peer.Send(Ack, seq: R + 1, ack: s + 1000);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);
        peer.Send(Ack, seq: R + 1, ack: s + 1000);
        peer.ExpectNothing();

        peer.Advance(TimeSpan.FromMilliseconds(500));
        peer.Send(Ack, seq: R + 1, ack: s + 1000);
        peer.Expect(Ack, seq: s, ack: R + 1, within: TimeSpan.Zero);

        // An acceptable duplicate of the last ACK needs no answer.
        peer.Send(Ack, seq: R + 1, ack: s);
        peer.ExpectNothing();
        Assert.Equal(TcpState.TimeWait, peer.State);
    }

    /// <summary>RFC 2883 §4 (1): an old duplicate with data, retransmitted into TIME-WAIT, is acknowledged with a D-SACK block.</summary>
    [Fact]
    public void Old_data_retransmitted_into_TIME_WAIT_is_acknowledged_with_a_D_SACK()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(sackPermitted: true));
        var s = iss + 1;
        peer.Send(PshAck, seq: R, ack: s, payload: [1, 2, 3, 4, 5]);
        peer.Expect(Ack, seq: s, ack: R + 5);
        Assert.Equal(5, peer.Read(connection).Length);
        peer.Advance(TimeSpan.FromMilliseconds(100));
        peer.Discard(); // a window update may follow the read
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R + 5);
        peer.Send(FinAck, seq: R + 5, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 6, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        peer.Send(PshAck, seq: R, ack: s + 1, payload: [1, 2, 3, 4, 5]);
        var ack = peer.Expect(Ack, seq: s + 1, ack: R + 6, within: TimeSpan.Zero);
        Assert.Equal(1, ack.Options.SackBlockCount);
        Assert.Equal(new SackBlock(R, R + 5), ack.Options.GetSackBlock(0));
    }

    /// <summary>RFC 7323 §5.3 R1 in TIME-WAIT: a segment whose timestamp is older than TS.Recent is dropped and answered, at most once per 500 ms for a pure ACK.</summary>
    [Fact]
    public void PAWS_applies_in_TIME_WAIT()
    {
        using var peer = new RawPeer(s => s.TimeWait = TimeSpan.FromSeconds(60));
        const uint tsVal = 1_000_000;
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(tsVal: tsVal));
        var s = iss + 1;
        connection.ShutdownSend();
        var fin = peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s + 1, options: Timestamps(tsVal + 5, fin.Options.TsVal));
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);

        // An old timestamp on a FIN (a segment with sequence space): always answered, with TSecr = TS.Recent.
        peer.Advance(TimeSpan.FromMilliseconds(10));
        peer.Send(FinAck, seq: R, ack: s + 1, options: Timestamps(tsVal + 1, fin.Options.TsVal));
        var answer = peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(tsVal + 5, answer.Options.TsEcr);
        Assert.True(answer.Options.TsVal >= fin.Options.TsVal + 10);

        // A pure ACK with an old timestamp and a new window (not a reordered duplicate): answered once per 500 ms.
        peer.Send(Ack, seq: R + 1, ack: s + 1, window: 1000, options: Timestamps(tsVal + 1, fin.Options.TsVal));
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        peer.Send(Ack, seq: R + 1, ack: s + 1, window: 1000, options: Timestamps(tsVal + 1, fin.Options.TsVal));
        peer.ExpectNothing();
        Assert.Equal(TcpState.TimeWait, peer.State);
    }

    /// <summary>The stack closes first: FIN-WAIT-1, FIN-WAIT-2, then the peer's FIN brings TIME-WAIT. Returns SND.MAX (our FIN acknowledged).</summary>
    private static (VsoConnection Connection, uint StackNext) CloseIntoTimeWait(RawPeer peer)
    {
        var (connection, iss) = peer.OpenPassive();
        var s = iss + 1;
        connection.ShutdownSend();
        peer.Expect(FinAck, seq: s, ack: R, within: TimeSpan.Zero);
        peer.Send(FinAck, seq: R, ack: s + 1);
        peer.Expect(Ack, seq: s + 1, ack: R + 1, within: TimeSpan.Zero);
        Assert.Equal(TcpState.TimeWait, peer.State);
        return (connection, s + 1);
    }

    /// <summary>The stack's <c>vso.tcp.time_wait</c> gauge, summed over its engines.</summary>
    private static long ObserveTimeWait(RawPeer peer)
    {
        long sum = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "vso.tcp.time_wait" && instrument.Meter == peer.Stack.Meter)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => sum += value);
        listener.Start();
        listener.RecordObservableInstruments();
        return sum;
    }

    private static TcpOptions Timestamps(uint tsVal, uint tsEcr)
    {
        var o = TcpOptions.None;
        o.HasTimestamp = true;
        o.TsVal = tsVal;
        o.TsEcr = tsEcr;
        return o;
    }
}
