using Vso.Transport.Tcp;

namespace Vso.Transport.Tests.Memory;

/// <summary>
/// The block ring of <see cref="ReceiveBuffer"/>: bytes come out as they went in across block boundaries, the ring's
/// wrap and a last block only partly used, in order or not, and every block goes back to the pool once nothing unread
/// and no out-of-order range lies in it.
/// </summary>
public sealed class ReceiveBufferTests
{
    [Fact]
    public void Bytes_out_of_order_across_blocks_and_the_wrap_come_out_in_order_and_blocks_go_back()
    {
        // 40,000 bytes: two whole blocks and a partial third; segments of 1,000 to 3,000 bytes, every fourth one held
        // back and delivered after the next, so holes open and fill.
        const int Capacity = 40_000;
        var memory = new MemoryBudget(0, metrics: null);
        var buffer = new ReceiveBuffer(Capacity, 64, memory);
        var random = new Random(3);
        var stream = new byte[3_000_000];
        random.NextBytes(stream);
        var output = new byte[stream.Length];
        uint isn = 0xFFFF_0000; // the sequence space wraps too
        var next = 0;
        var sent = 0;
        var read = 0;
        var chunk = new byte[7000];
        while (read < stream.Length)
        {
            // Send a pair: the later segment first (out of order), then the earlier one, within the window.
            var first = Math.Min(random.Next(1000, 3000), stream.Length - sent);
            var second = Math.Min(random.Next(1000, 3000), stream.Length - sent - first);
            if (first > 0 && sent + first + second - read <= Capacity)
            {
                if (second > 0)
                {
                    Assert.Equal(0, buffer.Write(isn + (uint)next, isn + (uint)(sent + first), stream.AsSpan(sent + first, second)));
                    Assert.Equal(second, buffer.OutOfOrderBytes);
                }

                var advance = buffer.Write(isn + (uint)next, isn + (uint)sent, stream.AsSpan(sent, first));
                Assert.Equal(first + second, advance);
                Assert.Equal(0, buffer.RangeCount);
                next += advance;
                sent += first + second;
            }

            var n = buffer.Read(chunk.AsSpan(0, random.Next(1, chunk.Length)));
            chunk.AsSpan(0, n).CopyTo(output.AsSpan(read));
            read += n;
            Assert.Equal(sent - read, buffer.Count);
            Assert.Equal((long)buffer.BlocksHeld * ReceiveBlockPool.BlockSize, memory.HeldBytes);
            Assert.True(buffer.BlocksHeld <= 3);
            if (buffer.Count == 0)
            {
                Assert.Equal(0, buffer.BlocksHeld);
            }
        }

        Assert.True(stream.AsSpan().SequenceEqual(output));
        Assert.Equal(0, memory.HeldBytes);
        Assert.Equal(0, memory.InOrderBytes);
    }

    [Fact]
    public void Pruning_drops_out_of_order_blocks_and_keeps_in_order_bytes()
    {
        var memory = new MemoryBudget(0, metrics: null);
        var buffer = new ReceiveBuffer(64 * 1024, 64, memory);
        var data = new byte[1000];
        Assert.Equal(1000, buffer.Write(0, 0, data));
        Assert.Equal(0, buffer.Write(1000, 20_000, data));
        Assert.Equal(0, buffer.Write(1000, 40_000, data));
        Assert.Equal(3, buffer.BlocksHeld);

        Assert.Equal(1000, buffer.PruneLastRange());
        Assert.Equal(2, buffer.BlocksHeld);
        Assert.Equal(1000, buffer.PruneOutOfOrder());
        Assert.Equal(1, buffer.BlocksHeld);
        Assert.Equal(1000, buffer.Count);
        Assert.Equal(0, memory.OutOfOrderBytes);

        buffer.Clear();
        Assert.Equal(0, memory.HeldBytes);
        Assert.Equal(0, memory.InOrderBytes);
    }

    /// <summary>An idle connection holds no slot table either: it goes back to the pool with the last block and is reused.</summary>
    [Fact]
    public void The_slot_table_goes_back_with_the_last_block_and_is_reused()
    {
        var memory = new MemoryBudget(0, metrics: null);
        var buffer = new ReceiveBuffer(64 * 1024, 64, memory);
        var data = new byte[100];
        Assert.Equal(100, buffer.Write(0, 0, data));
        Assert.Equal(100, buffer.Read(new byte[100]));
        Assert.Equal(0, buffer.BlocksHeld);

        var returned = memory.Pool.RentTable(4);
        Assert.All(returned, Assert.Null);
        memory.Pool.ReturnTable(returned);

        // The next connection (or the next burst) takes the same table back instead of allocating one.
        var other = new ReceiveBuffer(64 * 1024, 64, memory);
        Assert.Equal(100, other.Write(0, 0, data));
        Assert.NotSame(returned, memory.Pool.RentTable(4));
        Assert.Equal(100, other.Read(new byte[100]));
        Assert.Same(returned, memory.Pool.RentTable(4));
    }
}
