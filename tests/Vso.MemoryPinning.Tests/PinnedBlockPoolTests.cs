using System.Runtime;

namespace Vso.MemoryPinning.Tests;

public sealed class PinnedBlockPoolTests
{
    private static readonly int PageSize = Environment.SystemPageSize;

    [Fact]
    public void Rent_returns_block_of_block_size_with_default_options()
    {
        using var pool = new PinnedBlockPool();
        using var block = pool.Rent();

        Assert.Equal(4096, pool.BlockSize);
        Assert.Equal(4096, pool.MaxBufferSize);
        Assert.Equal(4096, block.Length);
        Assert.Equal(4096, block.Memory.Length);
        Assert.Equal(256 * 1024, pool.AllocatedBytes);
        Assert.True(block.IsRented);
        Assert.Same(pool, block.Pool);
    }

    [Fact]
    public void Rent_larger_than_block_size_is_refused()
    {
        using var pool = new PinnedBlockPool();
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(4097));
    }

    [Fact]
    public void Blocks_are_page_aligned_and_do_not_overlap()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 64 * 1024 });
        var blocks = Enumerable.Range(0, 40).Select(_ => pool.Rent()).ToList(); // crosses a slab boundary

        foreach (var b in blocks)
        {
            Assert.Equal(0, b.Address % Math.Min(b.Length, PageSize));
        }

        Assert.Equal(0, blocks[0].Address % PageSize);
        Assert.Equal(0, blocks[16].Address % PageSize); // first block of the second slab
        var sorted = blocks.OrderBy(b => b.Address).ToList();
        for (var i = 1; i < sorted.Count; i++)
        {
            Assert.True(sorted[i].Address >= sorted[i - 1].Address + sorted[i - 1].Length);
        }

        Assert.Equal(40, blocks.Select(b => b.Id).Distinct().Count());
        Assert.Equal(3 * 64 * 1024, pool.AllocatedBytes); // 40 blocks of 16 per slab
        blocks.ForEach(b => b.Dispose());
    }

    [Fact]
    public void Small_blocks_are_aligned_to_their_size()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { BlockSize = 512, SlabSize = 64 * 1024 });
        var blocks = Enumerable.Range(0, 10).Select(_ => pool.Rent()).ToList();
        Assert.All(blocks, b => Assert.Equal(0, b.Address % 512));
        Assert.Equal(0, blocks[0].Address % PageSize);
        blocks.ForEach(b => b.Dispose());
    }

    [Fact]
    public void Addresses_and_contents_are_stable_across_compacting_collections()
    {
        using var pool = new PinnedBlockPool();
        var blocks = Enumerable.Range(0, 8).Select(_ => pool.Rent()).ToList();
        var addresses = blocks.Select(b => b.Address).ToList();
        for (var i = 0; i < blocks.Count; i++)
        {
            blocks[i].Memory.Span.Fill((byte)(i + 1));
        }

        // Churn both heaps so compaction has something to move.
        var garbage = new List<byte[]>();
        for (var i = 0; i < 2000; i++)
        {
            garbage.Add(new byte[i % 3 == 0 ? 100_000 : 100]);
            if (i % 2 == 0)
            {
                garbage[i / 2] = null!;
            }
        }

        GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.KeepAlive(garbage);

        for (var i = 0; i < blocks.Count; i++)
        {
            Assert.Equal(addresses[i], blocks[i].Address);
            Assert.True(blocks[i].Memory.Span.IndexOfAnyExcept((byte)(i + 1)) < 0);
            unsafe
            {
                Assert.Equal(addresses[i], (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref blocks[i].Memory.Span[0]));
            }
        }

        blocks.ForEach(b => b.Dispose());
    }

    [Fact]
    public unsafe void Memory_Pin_returns_the_stable_address()
    {
        using var pool = new PinnedBlockPool();
        using var block = pool.Rent();
        using (var handle = block.Memory.Pin())
        {
            Assert.Equal(block.Address, (nint)handle.Pointer);
        }

        using var inner = block.Memory[100..].Pin();
        Assert.Equal(block.Address + 100, (nint)inner.Pointer);
    }

    [Fact]
    public void Generation_changes_on_every_rerent_and_id_is_kept()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 4096 });
        var first = pool.Rent();
        var (id, generation, address) = (first.Id, first.Generation, first.Address);
        first.Dispose();

        var second = pool.Rent();
        Assert.Equal(id, second.Id);
        Assert.Equal(address, second.Address);
        Assert.NotEqual(generation, second.Generation);
        Assert.NotSame(first, second);
        second.Dispose();

        var third = pool.Rent();
        Assert.NotEqual(generation, third.Generation);
        Assert.NotEqual(second.Generation, third.Generation);
        third.Dispose();
        Assert.Equal(4096, pool.AllocatedBytes); // one slab of one block, reused
    }

    [Fact]
    public void Double_dispose_is_harmless()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 8192 });
        var block = pool.Rent();
        block.Dispose();
        block.Dispose();

        Assert.Equal(0, pool.RentedBlocks);
        var a = pool.Rent();
        var b = pool.Rent();
        Assert.NotEqual(a.Id, b.Id); // the block went back to the free list once, not twice
        a.Dispose();
        b.Dispose();
    }

    [Fact]
    public void Memory_of_a_returned_block_cannot_reach_the_next_renter()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 4096 });
        var block = pool.Rent();
        var memory = block.Memory;
        block.Dispose();
        using var next = pool.Rent();

        Assert.Equal(block.Address, next.Address);
        Assert.False(block.IsRented);
        Assert.Throws<ObjectDisposedException>(() => memory.Span[0] = 1);
        Assert.Throws<ObjectDisposedException>(() => memory.Pin());
    }

    [Fact]
    public void MaxBytes_refuses_rent_with_a_message_naming_the_limit()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 8192, MaxBytes = 12288 });
        var blocks = new[] { pool.Rent(), pool.Rent(), pool.Rent() }; // the last slab is cut to 4096

        var error = Assert.Throws<InvalidOperationException>(() => pool.Rent());
        Assert.Contains("MaxBytes", error.Message, StringComparison.Ordinal);
        Assert.Contains("12288", error.Message, StringComparison.Ordinal);
        Assert.Equal(12288, pool.AllocatedBytes);

        blocks[0].Dispose();
        using var again = pool.Rent(); // freed capacity is usable again
        Assert.Equal(blocks[0].Id, again.Id);
        blocks[1].Dispose();
        blocks[2].Dispose();
    }

    [Theory]
    [InlineData(3000, 256 * 1024)]
    [InlineData(0, 256 * 1024)]
    [InlineData(4096, 1000)]
    [InlineData(8192, 4096)]
    public void Invalid_options_are_refused(int blockSize, int slabSize)
    {
        Assert.Throws<ArgumentException>(() => new PinnedBlockPool(new PinnedBlockPoolOptions { BlockSize = blockSize, SlabSize = slabSize }));
    }

    /// <summary>
    /// A peak's slabs go back once unused for a whole trim interval (the first slab stays); a descriptor of a freed slab is
    /// refused as released, and the pool grows again into the same slot ids.
    /// </summary>
    [Fact]
    public void TrimExcess_frees_slabs_unused_since_the_last_trim_and_refuses_their_old_descriptors()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 4 * 4096 });
        var peak = Enumerable.Range(0, 12).Select(_ => pool.Rent()).ToList(); // three slabs
        Assert.Equal(3 * 4 * 4096, pool.AllocatedBytes);
        var old = peak[11];
        var (oldId, oldGeneration, oldAddress) = (old.Id, old.Generation, old.Address);

        // Still rented: nothing to free.
        Assert.Equal(0, pool.TrimExcess());
        foreach (var block in peak.Skip(1))
        {
            block.Dispose();
        }

        // Used since the last trim: kept one more interval, so a steady load does not free and allocate slabs in turn.
        Assert.Equal(0, pool.TrimExcess());
        Assert.Equal(2 * 4 * 4096, pool.TrimExcess());
        Assert.Equal(4 * 4096, pool.AllocatedBytes);
        Assert.Equal(1, pool.RentedBlocks);
        var stale = Assert.Throws<StaleDescriptorException>(() => pool.Lease(oldId, oldGeneration, oldAddress, 16));
        Assert.Equal(StaleDescriptorReason.Released, stale.Reason);

        // Growing again reuses the freed slabs' slot ids instead of adding new ones.
        var again = Enumerable.Range(0, 11).Select(_ => pool.Rent()).ToList();
        Assert.Equal(3 * 4 * 4096, pool.AllocatedBytes);
        Assert.All(again, block => Assert.InRange(block.Id, 0, 11));
        Assert.Equal(12, again.Concat(peak.Take(1)).Select(block => block.Id).Distinct().Count());
        again[^1].GetSpan().Fill(0x5a);
        Assert.Throws<StaleDescriptorException>(() => pool.Validate(oldId, oldGeneration, oldAddress, 16));
        foreach (var block in again.Append(peak[0]))
        {
            block.Dispose();
        }
    }

    [Fact]
    public void Dispose_frees_slabs_when_nothing_is_rented()
    {
        var pool = new PinnedBlockPool();
        pool.Rent().Dispose();
        Assert.Equal(256 * 1024, pool.AllocatedBytes);

        pool.Dispose();
        Assert.Equal(0, pool.AllocatedBytes);
        Assert.Throws<ObjectDisposedException>(() => pool.Rent());
        pool.Dispose();
    }

    [Fact]
    public void Dispose_defers_freeing_until_the_last_block_is_returned()
    {
        var pool = new PinnedBlockPool();
        var block = pool.Rent();
        block.Memory.Span.Fill(7);

        pool.Dispose();
        Assert.Equal(256 * 1024, pool.AllocatedBytes);
        Assert.Equal(7, block.Memory.Span[4095]); // still valid memory
        Assert.Same(block, pool.Validate(block.Token, block.Address, block.Length));

        block.Dispose();
        Assert.Equal(0, pool.AllocatedBytes);
    }

    [Fact]
    public void Rent_and_return_from_many_threads_hand_out_each_block_once()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 16 * 4096 });
        var owners = new int[1024];
        Parallel.For(0, 8, worker =>
        {
            for (var i = 0; i < 2000; i++)
            {
                using var block = pool.Rent();
                Assert.Equal(0, Interlocked.Exchange(ref owners[block.Id], worker + 1));
                block.Memory.Span[0] = (byte)worker;
                Assert.Equal(worker + 1, Interlocked.Exchange(ref owners[block.Id], 0));
            }
        });

        Assert.Equal(0, pool.RentedBlocks);
        Assert.Equal(0, pool.Metrics.PinnedBytes);
    }

    [Fact]
    public void A_contiguous_region_holds_the_first_slabs_in_address_order_and_is_never_trimmed()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { BlockSize = 4096, SlabSize = 64 * 1024, ContiguousBytes = 128 * 1024 });
        var (region, length) = pool.ContiguousRegion;
        Assert.NotEqual(0, region);
        Assert.Equal(128 * 1024, length);
        Assert.Equal(0, region % PageSize);

        // Two slabs' worth of blocks come from the region, one after the other; the next slab is a separate allocation.
        var blocks = new List<PinnedBlock>();
        for (var i = 0; i < 32; i++)
        {
            blocks.Add(pool.Rent());
            Assert.Equal(region + (i * 4096), blocks[i].Address);
        }

        using var outside = pool.Rent();
        Assert.False(outside.Address >= region && outside.Address < region + length, "the 33rd block lies outside the region");

        // Returned and idle, the region's slabs stay (a UMEM registered on it keeps naming that memory); the other goes.
        foreach (var block in blocks)
        {
            block.Dispose();
        }

        outside.Dispose();
        _ = pool.TrimExcess();
        Assert.Equal(64 * 1024, pool.TrimExcess());
        Assert.Equal(128 * 1024, pool.AllocatedBytes);
        using var again = pool.Rent();
        Assert.True(again.Address >= region && again.Address < region + length);
    }

    [Fact]
    public void A_contiguous_region_must_be_whole_blocks_and_pages()
    {
        var error = Assert.Throws<ArgumentException>(() => new PinnedBlockPool(new PinnedBlockPoolOptions { BlockSize = 8192, ContiguousBytes = 12288 }));
        Assert.Contains("ContiguousBytes must be 0 or a positive multiple", error.Message, StringComparison.Ordinal);
    }
}
