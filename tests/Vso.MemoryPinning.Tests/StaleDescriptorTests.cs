namespace Vso.MemoryPinning.Tests;

public sealed class StaleDescriptorTests
{
    [Fact]
    public void Validate_accepts_a_current_descriptor_inside_the_block()
    {
        using var pool = new PinnedBlockPool();
        using var block = pool.Rent();

        Assert.Same(block, pool.Validate(block.Id, block.Generation, block.Address, block.Length));
        Assert.Same(block, pool.Validate(block.Token, block.Address + 100, 200));
        Assert.Same(block, pool.Validate(block.Token, block.Address + 4096, 0));
    }

    [Fact]
    public void Validate_refuses_a_released_block()
    {
        using var pool = new PinnedBlockPool();
        var block = pool.Rent();
        var token = block.Token;
        block.Dispose();

        var error = Assert.Throws<StaleDescriptorException>(() => pool.Validate(token, block.Address, 10));
        Assert.Equal(StaleDescriptorReason.Released, error.Reason);
        Assert.Equal(token.BlockId, error.BlockId);
        Assert.Equal(token.Generation, error.Generation);
        Assert.Contains($"block {token.BlockId} generation {token.Generation}", error.Message, StringComparison.Ordinal);
        Assert.Contains("already released", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_refuses_an_old_generation_after_rerent()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 4096 });
        var old = pool.Rent();
        var token = old.Token;
        old.Dispose();
        using var current = pool.Rent();
        Assert.Equal(token.BlockId, current.Id);

        var error = Assert.Throws<StaleDescriptorException>(() => pool.Validate(token, current.Address, 10));
        Assert.Equal(StaleDescriptorReason.Released, error.Reason);
        Assert.Contains("already released", error.Message, StringComparison.Ordinal);
        Assert.Contains($"generation {current.Generation}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_refuses_a_generation_never_issued()
    {
        using var pool = new PinnedBlockPool();
        using var block = pool.Rent();

        var error = Assert.Throws<StaleDescriptorException>(() => pool.Validate(block.Id, block.Generation + 5, block.Address, 1));
        Assert.Equal(StaleDescriptorReason.GenerationMismatch, error.Reason);
        Assert.Equal(StaleDescriptorReason.UnknownBlock, Assert.Throws<StaleDescriptorException>(() => pool.Validate(9999, 1, block.Address, 1)).Reason);
        Assert.Equal(StaleDescriptorReason.UnknownBlock, Assert.Throws<StaleDescriptorException>(() => pool.Validate(-1, 1, block.Address, 1)).Reason);
    }

    [Theory]
    [InlineData(-1, 10)]
    [InlineData(4090, 7)]
    [InlineData(4096, 1)]
    [InlineData(0, 4097)]
    [InlineData(0, -1)]
    public void Validate_refuses_a_range_outside_the_block(int offset, int length)
    {
        using var pool = new PinnedBlockPool();
        using var block = pool.Rent();

        var error = Assert.Throws<StaleDescriptorException>(() => pool.Validate(block.Token, block.Address + offset, length));
        Assert.Equal(StaleDescriptorReason.OutOfRange, error.Reason);
        Assert.Contains("outside block", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_does_not_read_memory_of_a_stale_block()
    {
        // Descriptors into a freed slab are refused from the pool's own bookkeeping, and a descriptor whose
        // address is unmapped (16) is refused too: reading it would crash the test host instead of throwing.
        var pool = new PinnedBlockPool();
        var block = pool.Rent();
        var token = block.Token;
        block.Dispose();
        pool.Dispose();
        Assert.Equal(0, pool.AllocatedBytes);

        Assert.Throws<StaleDescriptorException>(() => pool.Validate(token, block.Address, block.Length));
        Assert.Throws<StaleDescriptorException>(() => pool.Lease(token, block.Address, block.Length));

        using var live = new PinnedBlockPool();
        using var other = live.Rent();
        Assert.Throws<StaleDescriptorException>(() => live.Validate(other.Token, 16, 64));
    }

    [Fact]
    public void Lease_validates_and_holds_the_block_past_its_dispose()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 4096, MaxBytes = 4096 });
        var block = pool.Rent();
        var lease = pool.Lease(block.Token, block.Address + 10, 100);
        Assert.Equal(block.Address + 10, lease.Address);
        Assert.Equal(100, lease.Length);
        Assert.True(lease.IsActive);
        Assert.Equal(100, pool.Metrics.LeasedBytes);

        block.Dispose();

        // The descriptor is stale for new readers at once ...
        Assert.Throws<StaleDescriptorException>(() => pool.Validate(block.Token, lease.Address, 1));
        Assert.Equal(1, pool.RentedBlocks);
        Assert.Equal(4096, pool.Metrics.PinnedBytes);

        // ... but the memory is not handed to anyone else while the lease lasts: the pool's only block is held.
        Assert.Throws<InvalidOperationException>(() => pool.Rent());

        lease.Dispose();
        lease.Dispose(); // a second end of the same lease does nothing
        Assert.Equal(0, pool.Metrics.LeasedBytes);
        Assert.Equal(0, pool.RentedBlocks);
        Assert.Equal(0, pool.Metrics.PinnedBytes);
        using var next = pool.Rent();
        Assert.Equal(block.Id, next.Id);
    }

    [Fact]
    public void Block_Lease_covers_a_sub_range()
    {
        using var pool = new PinnedBlockPool();
        using var block = pool.Rent();
        using (var lease = block.Lease(4000, 96))
        {
            Assert.Equal(block.Address + 4000, lease.Address);
            Assert.Equal(96, pool.Metrics.LeasedBytes);
        }

        Assert.Equal(0, pool.Metrics.LeasedBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => block.Lease(4000, 97));
    }
}
