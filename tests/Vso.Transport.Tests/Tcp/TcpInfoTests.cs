using Vso.Transport.Links;

namespace Vso.Transport.Tests.Tcp;

/// <summary>TCP info in full (issue 11 item 13): the Linux TCP_INFO fields the stack knows move as a transfer does.</summary>
public sealed class TcpInfoTests
{
    [Fact]
    public void The_TCP_info_fields_move_during_a_lossy_reordering_transfer()
    {
        // Loss and reordering on the data direction, seeded: SACK scoreboard, RACK (RFC 8985 §6.2 reordering), retransmissions.
        var faults = new FaultOptions { Seed = 11, LossRate = 0.02, ReorderRate = 0.03, ReorderDelay = TimeSpan.FromMilliseconds(2) };
        using var net = new SimulatedNetwork(clientFaults: faults, delay: TimeSpan.FromMilliseconds(5));
        var (client, server) = net.Connect();
        var data = SimulatedNetwork.Pattern(4 << 20, 9);
        var sending = SimulatedNetwork.SendAllAsync(client, data, 256 * 1024);
        var receiving = SimulatedNetwork.ReceiveAllAsync(server);

        int unacked = 0, sacked = 0, lost = 0, retransmitting = 0;
        long notSent = 0, deliveryRate = 0, sendWindow = 0, receiveWindow = long.MaxValue;
        bool Done() => sending.IsCompleted && receiving.IsCompleted;
        while (!Done())
        {
            Assert.True(net.Run(Done, TimeSpan.FromMilliseconds(1)) || net.Clock.NowMicroseconds < 600_000_000, "the transfer did not finish");
            var info = client.GetInfo();
            unacked = Math.Max(unacked, info.UnackedSegments);
            sacked = Math.Max(sacked, info.SackedSegments);
            lost = Math.Max(lost, info.LostSegments);
            retransmitting = Math.Max(retransmitting, info.RetransmittingSegments);
            notSent = Math.Max(notSent, info.NotSentBytes);
            deliveryRate = Math.Max(deliveryRate, info.DeliveryRate);
            sendWindow = Math.Max(sendWindow, info.SendWindow);
            receiveWindow = Math.Min(receiveWindow, server.GetInfo().ReceiveWindow);
        }

        Assert.True(sending.IsCompletedSuccessfully);
        Assert.Equal(data.Length, net.Await(receiving).Length);
        var sender = client.GetInfo();
        Assert.True(unacked > 10, $"unacked {unacked}");
        Assert.True(sacked > 0, $"sacked {sacked}");
        Assert.True(lost > 0, $"lost {lost}");
        Assert.True(retransmitting > 0, $"retransmitting {retransmitting}");
        Assert.True(notSent > 0, $"not sent {notSent}");
        Assert.True(sendWindow > 0);
        Assert.True(receiveWindow < (1 << 20), $"receive window {receiveWindow} never below the buffer");
        Assert.True(sender.ReorderingSeen);
        Assert.True(sender.BytesRetransmitted >= sender.RetransmittedSegments, $"{sender.BytesRetransmitted} bytes for {sender.RetransmittedSegments} segments");
        Assert.True(sender.RetransmittedSegments > 0);

        // The path's round trip is 10 ms plus serialisation: the minimum sits there, the smoothed RTT above it. A sample
        // may fall a little short: the scoreboard makes the send times of one burst strictly increasing, 1 µs apart
        // (SackScoreboard.Stamp), so a segment late in a burst looks sent up to that many µs after it left.
        Assert.InRange(sender.MinRtt, TimeSpan.FromMilliseconds(9.5), TimeSpan.FromMilliseconds(12));
        Assert.True(sender.SmoothedRtt >= sender.MinRtt);

        // Delivered bytes per second cannot exceed what the transfer averaged by much, nor be nothing.
        var average = data.Length * 1_000_000L / Math.Max(1, net.Clock.NowMicroseconds);
        Assert.InRange(deliveryRate, average / 4, average * 20);

        // Once all is acknowledged nothing is left on the scoreboard.
        Assert.Equal(0, sender.UnackedSegments);
        Assert.Equal(0, sender.NotSentBytes);
    }

    [Fact]
    public void A_clean_transfer_sees_no_reordering_and_retransmits_nothing()
    {
        using var net = new SimulatedNetwork(delay: TimeSpan.FromMilliseconds(1));
        var (client, server) = net.Connect();
        var data = SimulatedNetwork.Pattern(1 << 20, 10);
        var sending = SimulatedNetwork.SendAllAsync(client, data, 256 * 1024);
        var receiving = SimulatedNetwork.ReceiveAllAsync(server);
        Assert.True(net.Run(() => sending.IsCompleted && receiving.IsCompleted, TimeSpan.FromMinutes(1)));
        var sender = client.GetInfo();
        Assert.False(sender.ReorderingSeen);
        Assert.Equal(0, sender.BytesRetransmitted);
        Assert.Equal(0, sender.LostSegments);
        Assert.True(sender.DeliveryRate > 0);
        Assert.InRange(sender.MinRtt, TimeSpan.FromMilliseconds(1.5), TimeSpan.FromMilliseconds(3)); // 2 ms, less the burst stamps (see above)
        Assert.InRange(server.GetInfo().ReceiveWindow, 1, 1 << 20);
    }
}
