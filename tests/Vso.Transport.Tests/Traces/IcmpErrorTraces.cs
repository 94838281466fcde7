using Vso.Transport.Interface;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// ICMP Destination Unreachable delivered to TCP: RFC 1122 §4.2.3.9 and RFC 5461 (hard errors end a connect only in
/// SYN-SENT; soft errors otherwise), RFC 5927 §4.1 (the quoted sequence number must lie in flight) and RFC 1191
/// (fragmentation needed lowers the MSS and the in-flight data is resent cut to it).
/// </summary>
public sealed class IcmpErrorTraces
{
    private static readonly Ipv4Address Router = Ipv4Address.Parse("198.18.0.254");

    [Theory]
    [InlineData(3, TcpError.Refused)]            // port unreachable
    [InlineData(2, TcpError.Refused)]            // protocol unreachable
    [InlineData(1, TcpError.HostUnreachable)]    // host unreachable
    [InlineData(0, TcpError.NetworkUnreachable)] // net unreachable
    public void Unreachable_in_SYN_SENT_fails_the_connect_with_a_clear_error(byte code, TcpError expected)
    {
        using var peer = new RawPeer();
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, peer.Port);
        var syn = peer.Expect(Syn);

        peer.SendUnreachable(RawPeer.PeerAddress, code, peer.QuoteOfStackSegment(syn.SourcePort, peer.Port, syn.Seq));

        TraceAssert.FailedWith(connecting, expected);
        Assert.Equal(TcpState.Closed, peer.State);
        var message = connecting.Exception!.InnerException!.Message;
        Assert.Contains("ICMP destination unreachable", message, StringComparison.Ordinal);
        peer.ExpectNothing(TimeSpan.FromSeconds(10)); // no SYN retransmission
    }

    [Fact]
    public void Unreachable_quoting_a_sequence_number_not_in_flight_is_ignored_RFC_5927()
    {
        using var peer = new RawPeer();
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, peer.Port);
        var syn = peer.Expect(Syn);

        peer.SendUnreachable(RawPeer.PeerAddress, 3, peer.QuoteOfStackSegment(syn.SourcePort, peer.Port, syn.Seq + 1));
        peer.SendUnreachable(RawPeer.PeerAddress, 3, peer.QuoteOfStackSegment(syn.SourcePort, peer.Port, syn.Seq - 1));
        peer.SendUnreachable(RawPeer.PeerAddress, 3, peer.QuoteOfStackSegment((ushort)(syn.SourcePort + 1), peer.Port, syn.Seq));
        Assert.Equal(TcpState.SynSent, peer.State);
        Assert.Equal(3, peer.Stack.Core.Tcp.IcmpErrorsIgnored);

        peer.StackPort = syn.SourcePort;
        peer.Send(SynAck, seq: 5000, ack: syn.Seq + 1, options: RawPeer.SynOptions());
        peer.Expect(Ack);
        Assert.Equal(TcpState.Established, TraceAssert.Result(connecting).GetInfo().State);
    }

    [Fact]
    public void Unreachable_from_a_martian_source_is_dropped_before_TCP()
    {
        using var peer = new RawPeer();
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, peer.Port);
        var syn = peer.Expect(Syn);

        peer.SendUnreachable(Ipv4Address.Parse("127.0.0.1"), 3, peer.QuoteOfStackSegment(syn.SourcePort, peer.Port, syn.Seq));
        peer.SendUnreachable(Ipv4Address.Parse("203.0.113.1"), 3, peer.QuoteOfStackSegment(syn.SourcePort, peer.Port, syn.Seq));

        Assert.False(connecting.IsCompleted);
        Assert.Equal(1, peer.Interface().Martians.Dropped(MartianReason.Loopback));
        Assert.Equal(1, peer.Interface().Martians.Dropped(MartianReason.NoRoute));
    }

    [Fact]
    public void Malformed_unreachable_messages_are_dropped_and_counted_without_throwing()
    {
        using var peer = new RawPeer();
        var connecting = peer.Stack.ConnectAsync(RawPeer.PeerAddress, peer.Port);
        var syn = peer.Expect(Syn);
        var quote = peer.QuoteOfStackSegment(syn.SourcePort, peer.Port, syn.Seq);
        var counters = peer.Interface().Counters;

        // A quote cut short of its 8 TCP bytes.
        peer.SendUnreachable(RawPeer.PeerAddress, 3, quote[..24]);
        Assert.Equal(1, counters.Dropped(WireLayer.Icmp, WireStatus.Truncated));

        // A quote that is not IPv4.
        var notIpv4 = (byte[])quote.Clone();
        notIpv4[0] = 0x65;
        peer.SendUnreachable(RawPeer.PeerAddress, 3, notIpv4);
        Assert.Equal(1, counters.Dropped(WireLayer.Icmp, WireStatus.BadVersion));

        // A quoted IHL below 5.
        var shortHeader = (byte[])quote.Clone();
        shortHeader[0] = 0x44;
        peer.SendUnreachable(RawPeer.PeerAddress, 3, shortHeader);
        Assert.Equal(1, counters.Dropped(WireLayer.Icmp, WireStatus.BadHeaderLength));

        // A quoted IHL longer than the quote.
        var longHeader = (byte[])quote.Clone();
        longHeader[0] = 0x4F;
        peer.SendUnreachable(RawPeer.PeerAddress, 3, longHeader);
        Assert.Equal(2, counters.Dropped(WireLayer.Icmp, WireStatus.Truncated));

        // A bad checksum.
        var message = new byte[IcmpErrorMessage.HeaderLength + quote.Length];
        IcmpErrorMessage.Write(message, 3, 0, quote);
        message[2] ^= 0xFF;
        peer.SendIpv4(RawPeer.PeerAddress, RawPeer.StackAddress, IpProtocol.Icmp, message);
        Assert.Equal(1, counters.Dropped(WireLayer.Icmp, WireStatus.BadChecksum));

        // A quote of a datagram that was not ours.
        var notOurs = (byte[])quote.Clone();
        RawPeer.PeerAddress.Write(notOurs.AsSpan(12));
        peer.SendUnreachable(RawPeer.PeerAddress, 3, notOurs);
        Assert.Equal(1, counters.Dropped(WireLayer.Icmp, WireStatus.BadAddress));

        Assert.False(connecting.IsCompleted);
        Assert.Equal(TcpState.SynSent, peer.State);
        Assert.Equal(0, peer.Stack.Core.ContainedExceptions);
    }

    [Fact]
    public void Unreachable_for_an_established_connection_is_soft_it_does_not_reset_it_RFC_1122_4_2_3_9()
    {
        using var peer = new RawPeer(s => s.MaxRetransmissions = 2);
        var (connection, iss) = peer.OpenPassive();
        _ = connection.SendAsync(TraceAssert.Bytes(100));
        var data = peer.Expect(PshAck, seq: iss + 1);

        peer.SendUnreachable(Router, 1, peer.QuoteOfStackSegment(peer.StackPort, peer.Port, data.Seq));
        peer.SendUnreachable(Router, 3, peer.QuoteOfStackSegment(peer.StackPort, peer.Port, data.Seq));
        Assert.Equal(TcpState.Established, peer.State);
        Assert.Equal(TcpError.Refused, peer.Connection!.SoftError);
        peer.ExpectNothing(); // no RST, nothing at all

        // The peer still answers: the connection goes on.
        peer.Send(Ack, seq: 1001, ack: iss + 101);
        _ = connection.SendAsync(TraceAssert.Bytes(10));
        peer.Expect(PshAck, seq: iss + 101);
        Assert.Equal(TcpState.Established, peer.State);
    }

    [Fact]
    public void A_soft_error_is_reported_when_the_connection_later_times_out()
    {
        using var peer = new RawPeer(s => s.MaxRetransmissions = 2);
        var (connection, iss) = peer.OpenPassive();
        var sending = connection.SendAsync(TraceAssert.Bytes(100));
        var data = peer.Expect(PshAck, seq: iss + 1);
        peer.SendUnreachable(Router, 1, peer.QuoteOfStackSegment(peer.StackPort, peer.Port, data.Seq));

        peer.RunUntil(() => sending.IsCompleted, TimeSpan.FromMinutes(5));
        TraceAssert.FailedWith(sending, TcpError.HostUnreachable);
        Assert.Contains("timed out", sending.Exception!.InnerException!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Forged_fragmentation_needed_with_a_sequence_number_not_in_flight_is_ignored_RFC_5927()
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive();
        _ = connection.SendAsync(TraceAssert.Bytes(3000));
        peer.Expect(Ack, seq: iss + 1);
        peer.Expect(Ack, seq: iss + 1461);
        peer.Expect(PshAck, seq: iss + 2921);

        peer.SendUnreachable(Router, 4, peer.QuoteOfStackSegment(peer.StackPort, peer.Port, iss + 3001), nextHopMtu: 600);
        peer.SendUnreachable(Router, 4, peer.QuoteOfStackSegment(peer.StackPort, peer.Port, iss), nextHopMtu: 600);
        peer.SendUnreachable(Router, 4, peer.QuoteOfStackSegment(peer.StackPort, peer.Port, iss + 100_000), nextHopMtu: 600);

        Assert.Equal(1460, connection.GetInfo().MaxSegmentSize);
        Assert.Equal(3, peer.Stack.Core.Tcp.IcmpErrorsIgnored);
        peer.ExpectNothing();
    }

    [Theory]
    [InlineData(false, false, 1000, 960)]   // NewReno, RFC 1191 §4 next-hop MTU
    [InlineData(true, false, 1000, 960)]    // RACK-TLP
    [InlineData(true, true, 1000, 948)]     // RACK-TLP with timestamps (12 option bytes per segment)
    [InlineData(false, false, 100, 536)]    // below the floor: 576, not 100
    [InlineData(false, false, 0, 1452)]     // a pre-RFC 1191 router: the plateau below 1500 is 1492 (RFC 1191 §7)
    public void Valid_fragmentation_needed_lowers_the_MSS_and_resends_the_in_flight_data_cut_to_it(bool sack, bool timestamps, int nextHopMtu, int expectedMss)
    {
        using var peer = new RawPeer();
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(sackPermitted: sack, tsVal: timestamps ? 1u : null));
        var before = connection.GetInfo().MaxSegmentSize;
        const int total = 6000;
        var payload = TraceAssert.Bytes(total, 7);
        var sending = connection.SendAsync(payload);

        // The first flight leaves at full size, and the router drops it all.
        var sent = 0;
        while (sent < total)
        {
            var s = peer.Next(TimeSpan.Zero);
            Assert.Equal(Math.Min(before, total - sent), s.Length);
            sent += s.Length;
        }

        peer.SendUnreachable(Router, 4, peer.QuoteOfStackSegment(peer.StackPort, peer.Port, iss + 1, totalLength: 40 + before), nextHopMtu: (ushort)nextHopMtu);
        Assert.Equal(expectedMss, connection.GetInfo().MaxSegmentSize);

        // Resent at once (no timeout), cut to the new MSS; the peer acknowledges what arrives in order.
        var received = new byte[total];
        var contiguous = 0;
        var first = true;
        for (var round = 0; round < 64 && contiguous < total; round++)
        {
            var s = peer.Next(first ? TimeSpan.Zero : TimeSpan.FromSeconds(1));
            first = false;
            Assert.True(s.Length <= expectedMss, $"segment of {s.Length} bytes after the MSS fell to {expectedMss}: {s}");
            var offset = (int)(s.Seq - (iss + 1));
            s.Payload.CopyTo(received, offset);
            if (offset <= contiguous && offset + s.Length > contiguous)
            {
                contiguous = offset + s.Length;
                peer.Send(Ack, seq: 1001, ack: iss + 1 + (uint)contiguous, options: timestamps ? EchoOf(s) : null);
            }
        }

        Assert.Equal(total, contiguous);
        Assert.Equal(payload, received);
        peer.RunUntil(() => sending.IsCompleted, TimeSpan.FromSeconds(1));
        Assert.True(sending.IsCompletedSuccessfully);
        Assert.Equal(0, connection.GetInfo().Timeouts);
        Assert.Equal(TcpState.Established, peer.State);
    }

    private static TcpOptions EchoOf(TraceSegment s)
    {
        var o = TcpOptions.None;
        o.HasTimestamp = true;
        o.TsVal = 2;
        o.TsEcr = s.Options.TsVal;
        return o;
    }
}
