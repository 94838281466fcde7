using Vso.Transport.Api;
using Vso.Transport.Tcp;
using Vso.Transport.Tests.Traces;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Memory;

/// <summary>
/// The stack's receive memory budget (<see cref="TcpSettings.MemoryLimit"/>), played by hand in virtual time. The limit is
/// four 16 KiB blocks (64 KiB), so the soft mark is three (48 KiB); each connection's buffer is 60,000 bytes (no window
/// scaling, the window field is in bytes). Segments carry 1,000 bytes.
/// </summary>
public sealed class MemoryBudgetTraces
{
    private const uint R = 1001;
    private const int Block = ReceiveBlockPool.BlockSize;
    private const int Buffer = 60_000;

    private static RawPeer BudgetPeer() => new(s =>
    {
        s.ReceiveBufferSize = Buffer;
        s.MemoryLimit = 4 * Block;
    });

    [Fact]
    public void Above_the_soft_mark_out_of_order_data_is_pruned_first()
    {
        using var peer = BudgetPeer();
        var memory = peer.Stack.Core.Tcp.Memory;
        var (connection, iss) = peer.OpenPassive(synOptions: RawPeer.SynOptions(sackPermitted: true));
        var s = iss + 1;

        // 10,000 bytes in order (block 0), then 1,000 out of order in block 2: two blocks, below the soft mark. The
        // out-of-order bytes are kept and SACKed (RFC 2018 §4).
        Fill(peer, s, R, 10_000);
        peer.Send(PshAck, seq: R + 35_000, ack: s, payload: TraceAssert.Bytes(1000));
        var sacked = peer.Expect(Ack, seq: s, ack: R + 10_000, within: TimeSpan.Zero);
        Assert.Equal(1, sacked.Options.SackBlockCount);
        Assert.Equal(R + 35_000, sacked.Options.GetSackBlock(0).Left);
        Assert.Equal(2 * Block, memory.HeldBytes);
        Assert.Equal(1000, memory.OutOfOrderBytes);

        // In-order bytes that need block 1 would reach the soft mark: the out-of-order data beyond them goes first
        // (from the right, as Linux's tcp_prune_ofo_queue). That range was SACKed, so this is reneging, which
        // RFC 2018 §8 permits: the sender keeps SACKed data until it is cumulatively acknowledged. The ACK carries
        // no SACK block any more.
        var ack = Fill(peer, s, R + 10_000, 7000);
        Assert.Equal(R + 17_000, ack.Ack);
        Assert.Equal(0, ack.Options.SackBlockCount);
        Assert.Equal(1000, memory.PrunedBytes);
        Assert.Equal(0, memory.OutOfOrderBytes);
        Assert.Equal(2 * Block, memory.HeldBytes);

        // Out-of-order bytes that need a third block are dropped at the soft mark (nothing beyond them to prune).
        peer.Send(PshAck, seq: R + 40_000, ack: s, payload: TraceAssert.Bytes(1000));
        var dropped = peer.Expect(Ack, seq: s, ack: R + 17_000, within: TimeSpan.Zero);
        Assert.Equal(0, dropped.Options.SackBlockCount);
        Assert.Equal(0, peer.Connection!.Receiver.OutOfOrderRanges);
        Assert.Equal(2 * Block, memory.HeldBytes);

        // In-order data acknowledged is kept: every byte is read back, and the blocks go back to the pool.
        Assert.Equal(17_000, ReadAll(peer, connection, 17_000));
        Assert.Equal(0, memory.HeldBytes);
        Assert.Equal(0, memory.InOrderBytes);
    }

    [Fact]
    public void Above_the_soft_mark_the_window_stops_opening_but_is_never_retracted()
    {
        using var peer = BudgetPeer();
        var memory = peer.Stack.Core.Tcp.Memory;
        peer.Port = 40001;
        var (a, aIss) = peer.OpenPassive(isn: 1000);
        peer.Port = 40002;
        var (b, bIss) = peer.OpenPassive(isn: 1000);

        // B holds two blocks, A one: three blocks, the soft mark.
        Fill(peer, bIss + 1, R, 20_000);
        peer.Port = 40001;
        var last = Fill(peer, aIss + 1, R, 10_000);
        Assert.Equal(3 * Block, memory.HeldBytes);
        Assert.True(memory.UnderPressure);
        var rightEdge = last.Ack + last.Window;
        Assert.Equal(R + (uint)Buffer, rightEdge);

        // A's application reads half: normally the window would open by 5,000 bytes; under pressure it stays where it
        // was (RFC 9293 §3.8.6: the right edge is not moved back, only no longer moved forward), so no update is sent.
        Assert.Equal(5000, Read(peer, a, 5000));
        peer.ExpectNothing(TimeSpan.FromMilliseconds(200));

        // The next ACK offers only what reaches the old right edge: 49,000 bytes rather than 54,000.
        last = Fill(peer, aIss + 1, R + 10_000, 1000);
        Assert.Equal(R + 11_000, last.Ack);
        Assert.Equal(Buffer - 11_000, last.Window);
        Assert.Equal(rightEdge, last.Ack + last.Window);

        // B's application reads everything: its blocks go back, the pressure ends, and A's window opens again.
        peer.Port = 40002;
        Assert.Equal(20_000, ReadAll(peer, b, 20_000));
        Assert.False(memory.UnderPressure);
        peer.Port = 40001;
        last = Fill(peer, aIss + 1, R + 11_000, 1000);
        Assert.Equal(Buffer - 7000, last.Window);
    }

    [Fact]
    public void At_the_limit_a_new_SYN_is_refused_and_the_largest_holder_is_reset()
    {
        using var peer = BudgetPeer();
        var memory = peer.Stack.Core.Tcp.Memory;
        peer.Port = 40001;
        var (a, aIss) = peer.OpenPassive(isn: 1000);
        peer.Port = 40002;
        var (b, bIss) = peer.OpenPassive(isn: 1000);
        using var listener = peer.Stack.Listen(80);

        // B holds three blocks (the soft mark), then A one: the limit.
        Fill(peer, bIss + 1, R, 40_000);
        peer.Port = 40001;
        Fill(peer, aIss + 1, R, 10_000);
        Assert.Equal(4 * Block, memory.HeldBytes);

        // A new connection could not hold a byte: its SYN is dropped, counted (the client retries).
        peer.Port = 40003;
        peer.Send(Syn, seq: 7000, options: RawPeer.SynOptions());
        peer.ExpectNothing(TimeSpan.FromMilliseconds(100));
        Assert.Equal(1, memory.RefusedConnections);

        // A's next in-order bytes (inside the window it was offered) need a fifth block: B, holding the most, is reset.
        peer.Port = 40001;
        // The seventh segment crosses into A's second block.
        for (var sent = 10_000; sent < 17_000; sent += 1000)
        {
            peer.Send(PshAck, seq: R + (uint)sent, ack: aIss + 1, payload: TraceAssert.Bytes(1000));
        }

        // A's ACKs come first, one per 2*RMSS bytes of new data (RFC 9293 §3.8.6.3), then B's reset.
        var reset = peer.Next(TimeSpan.Zero);
        while (reset.DestinationPort == 40001 && reset.Flags == Ack)
        {
            reset = peer.Next(TimeSpan.Zero);
        }

        Assert.True(reset.Flags == RstAck && reset.Seq == bIss + 1, $"Expected B's reset, got {reset}");
        Assert.Equal(40002, reset.DestinationPort);
        Assert.Equal(1, memory.ResetConnections);
        Assert.Equal(2 * Block, memory.HeldBytes);
        Assert.Equal(R + 17_000, a.GetInfo().ReceiveNext);

        // B's application sees why: the memory limit, not a silent loss.
        var receiving = b.ReceiveAsync(new byte[16]).AsTask();
        peer.Pump();
        TraceAssert.FailedWith(receiving, TcpError.MemoryLimit);

        // A keeps every acknowledged byte; the freed memory admits a new connection again.
        peer.Port = 40001;
        Assert.Equal(17_000, ReadAll(peer, a, 17_000));
        peer.Port = 40003;
        peer.Discard();
        peer.Send(Syn, seq: 7000, options: RawPeer.SynOptions());
        peer.Expect(SynAck, ack: 7001, within: TimeSpan.Zero);
    }

    [Fact]
    public void Memory_returns_to_the_pool_after_reads_and_after_connections_close()
    {
        using var peer = BudgetPeer();
        var memory = peer.Stack.Core.Tcp.Memory;
        peer.Port = 40001;
        var (a, aIss) = peer.OpenPassive(isn: 1000);
        peer.Port = 40002;
        var (b, bIss) = peer.OpenPassive(isn: 1000);

        // A: in order and out of order; read to the end once the hole fills.
        peer.Port = 40001;
        Fill(peer, aIss + 1, R, 5000);
        peer.Send(PshAck, seq: R + 6000, ack: aIss + 1, payload: TraceAssert.Bytes(1000));
        Assert.Equal(1000, memory.OutOfOrderBytes);
        Fill(peer, aIss + 1, R + 5000, 1000);
        Assert.Equal(0, memory.OutOfOrderBytes);
        Assert.Equal(7000, memory.InOrderBytes);
        Assert.Equal(7000, ReadAll(peer, a, 7000));

        // B: bytes never read, then the application aborts: the blocks go back too.
        peer.Port = 40002;
        Fill(peer, bIss + 1, R, 30_000);
        Assert.Equal(2 * Block, memory.HeldBytes);
        b.Abort();
        peer.Pump();
        peer.Expect(RstAck, within: TimeSpan.Zero);

        Assert.Equal(0, memory.HeldBytes);
        Assert.Equal(0, memory.InOrderBytes);
        Assert.Equal(0, memory.OutOfOrderBytes);
        Assert.Equal(0, memory.PrunedBytes);
    }

    /// <summary>Sends <paramref name="bytes"/> in 1,000-byte segments from <paramref name="seq"/>; returns the last ACK after the delayed-ACK timer.</summary>
    private static TraceSegment Fill(RawPeer peer, uint ack, uint seq, int bytes)
    {
        for (var sent = 0; sent < bytes; sent += 1000)
        {
            peer.Send(PshAck, seq: seq + (uint)sent, ack: ack, payload: TraceAssert.Bytes(Math.Min(1000, bytes - sent)));
        }

        peer.Advance(TimeSpan.FromMilliseconds(100));
        TraceSegment? last = null;
        while (peer.Pending > 0)
        {
            last = peer.Next(TimeSpan.Zero);
        }

        Assert.NotNull(last);
        return last;
    }

    private static int Read(RawPeer peer, VsoConnection connection, int max) => peer.Read(connection, max).Length;

    private static int ReadAll(RawPeer peer, VsoConnection connection, int expected)
    {
        var total = 0;
        while (total < expected)
        {
            var n = Read(peer, connection, expected - total);
            Assert.True(n > 0, "the stream ended early");
            total += n;
        }

        peer.Discard();
        return total;
    }
}
