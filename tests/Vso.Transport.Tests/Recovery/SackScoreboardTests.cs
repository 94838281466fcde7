using Vso.Transport.Tcp.Recovery;

namespace Vso.Transport.Tests.Recovery;

/// <summary>
/// The scoreboard's count of retransmitted records, which lets RACK stop its walk early while there are none
/// (RFC 8985 §6.2 step 5 walks segments in send order; without retransmissions sequence order is send order).
/// </summary>
public sealed class SackScoreboardTests
{
    private const int Mss = 1000;
    private const uint Base = 5_000;

    [Fact]
    public void Retransmitted_records_are_counted_through_splits_and_acknowledgments()
    {
        var board = new SackScoreboard();
        for (var i = 0u; i < 10; i++)
        {
            board.OnTransmit(Base + (i * Mss), Base + ((i + 1) * Mss), 100 + i);
        }

        Assert.Equal(0, board.RetransmittedRecords);

        // Half of segment 2 and all of segment 3 are resent: segment 2 splits, its resent half and segment 3 count.
        board.OnRetransmit(Base + (2 * Mss) + (Mss / 2), Base + (4 * Mss), 200);
        Assert.Equal(2, board.RetransmittedRecords);
        Assert.Equal(11, board.Count);

        // Resending the same range again counts nothing new.
        board.OnRetransmit(Base + (2 * Mss) + (Mss / 2), Base + (4 * Mss), 300);
        Assert.Equal(2, board.RetransmittedRecords);

        // A later split of a resent record (a retransmission of its first part) makes two resent records of it.
        board.OnRetransmit(Base + (3 * Mss), Base + (3 * Mss) + 100, 400);
        Assert.Equal(3, board.RetransmittedRecords);

        long sentAt = -1;
        uint end = 0;
        var resent = false;
        board.OnCumulativeAck(Base + (3 * Mss) + 100, ref sentAt, ref end, ref resent);
        Assert.Equal(1, board.RetransmittedRecords);
        board.OnCumulativeAck(Base + (10 * Mss), ref sentAt, ref end, ref resent);
        Assert.Equal(0, board.RetransmittedRecords);
        Assert.Equal(0, board.Count);
    }

    [Fact]
    public void The_count_matches_the_records_under_random_operations()
    {
        var random = new Random(20261203);
        var board = new SackScoreboard();
        uint next = Base, una = Base;
        long now = 1_000;
        for (var step = 0; step < 20_000; step++)
        {
            now += 10;
            switch (random.Next(4))
            {
                case 0 or 1:
                    var length = (uint)random.Next(1, 3 * Mss);
                    board.OnTransmit(next, next + length, now);
                    next += length;
                    break;
                case 2 when next != una:
                    var start = una + (uint)random.Next((int)(next - una));
                    board.OnRetransmit(start, start + (uint)random.Next(1, 2 * Mss), now);
                    break;
                case 3 when next != una:
                    long sentAt = -1;
                    uint end = 0;
                    var resent = false;
                    una += (uint)random.Next((int)(next - una) + 1);
                    board.OnCumulativeAck(una, ref sentAt, ref end, ref resent);
                    break;
            }

            var counted = 0;
            for (var i = 0; i < board.Count; i++)
            {
                counted += board[i].WasRetransmitted ? 1 : 0;
            }

            Assert.Equal(counted, board.RetransmittedRecords);
        }
    }
}
