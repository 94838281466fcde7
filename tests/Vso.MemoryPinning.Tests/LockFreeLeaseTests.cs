namespace Vso.MemoryPinning.Tests;

/// <summary>
/// Leases without a lock (LeaseTable, a pin's or a pool slot's state word): ending twice does nothing, a block or pin
/// given back while leased is kept until the last lease ends and then released exactly once, also when leases are taken
/// and ended on several threads while the owner releases.
/// </summary>
public sealed class LockFreeLeaseTests
{
    [Fact]
    public void Lease_table_grows_past_a_chunk_and_refuses_a_second_end()
    {
        var table = new LeaseTable<object>();
        var target = new object();
        var tokens = new List<long>();
        for (var i = 0; i < 3000; i++)
        {
            tokens.Add(table.Add(target, i));
        }

        Assert.Equal(3000, tokens.Distinct().Count());
        for (var i = 0; i < tokens.Count; i++)
        {
            Assert.True(table.TryRemove(tokens[i], out var t, out var length));
            Assert.Same(target, t);
            Assert.Equal(i, length);
            Assert.False(table.TryRemove(tokens[i], out _, out _)); // ended twice: nothing
        }

        // Slots are reused under new stamps: an old token never ends a new lease.
        var fresh = table.Add(target, 7);
        Assert.DoesNotContain(fresh, tokens);
        Assert.False(table.TryRemove(tokens[^1], out _, out _));
        Assert.True(table.TryRemove(fresh, out _, out _));
        Assert.False(table.TryRemove(0, out _, out _)); // a token never issued
    }

    [Fact]
    public void Pool_block_returned_while_leased_is_freed_by_the_last_lease_once()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 64 * 1024 });
        var block = pool.Rent();
        var (id, generation, address) = (block.Id, block.Generation, block.Address);
        var first = pool.Lease(id, generation, address, 100);
        var second = pool.Lease(id, generation, address + 100, 100);
        Assert.Equal(200, pool.Metrics.LeasedBytes);

        block.Dispose();
        Assert.Equal(1, pool.RentedBlocks); // kept: a link may still read the leased ranges
        Assert.Throws<StaleDescriptorException>(() => pool.Lease(id, generation, address, 10));

        first.Dispose();
        first.Dispose(); // ended twice: nothing
        Assert.Equal(1, pool.RentedBlocks);
        Assert.Equal(100, pool.Metrics.LeasedBytes);

        second.Dispose();
        Assert.Equal(0, pool.RentedBlocks);
        Assert.Equal(0, pool.Metrics.LeasedBytes);

        // The block went back once: the next two rents are two different blocks.
        using var a = pool.Rent();
        using var b = pool.Rent();
        Assert.NotEqual(a.Id, b.Id);
        Assert.Throws<StaleDescriptorException>(() => pool.Lease(id, generation, address, 10));
    }

    [Fact]
    public void Pool_leases_on_four_threads_while_blocks_are_rented_and_returned_balance_to_zero()
    {
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 64 * 1024 });
        var stop = DateTime.UtcNow + TimeSpan.FromSeconds(1);
        var refused = 0L;
        var leased = 0L;
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            while (DateTime.UtcNow < stop)
            {
                var block = pool.Rent();
                var (id, generation, address) = (block.Id, block.Generation, block.Address);
                var leases = new List<PinLease>();
                for (var i = 0; i < random.Next(1, 8); i++)
                {
                    leases.Add(pool.Lease(id, generation, address + (i * 16), 16));
                }

                Interlocked.Add(ref leased, leases.Count);
                if (random.Next(2) == 0)
                {
                    block.Dispose(); // given back while leased
                    try
                    {
                        pool.Lease(id, generation, address, 16).Dispose();
                        Assert.Fail("a lease on a returned block was granted");
                    }
                    catch (StaleDescriptorException)
                    {
                        Interlocked.Increment(ref refused);
                    }

                    foreach (var lease in leases)
                    {
                        lease.Dispose();
                        lease.Dispose();
                    }
                }
                else
                {
                    foreach (var lease in leases)
                    {
                        lease.Dispose();
                    }

                    block.Dispose();
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.True(leased > 1000, $"only {leased} leases");
        Assert.True(refused > 0);
        Assert.Equal(0, pool.RentedBlocks);
        Assert.Equal(0, pool.Metrics.LeasedBytes);
        Assert.Equal(0, pool.Metrics.PinnedBytes);
    }

    [Fact]
    public void Foreign_pin_released_while_leases_end_on_other_threads_is_unpinned_exactly_once()
    {
        var pinner = new ForeignMemoryPinner();
        var observer = new CountingObserver();
        for (var round = 0; round < 200; round++)
        {
            var pin = pinner.Pin(new byte[4096], observer, round);
            var leases = Enumerable.Range(0, 64).Select(i => pin.Lease(i * 64, 64)).ToArray();
            using var go = new ManualResetEventSlim(false);
            var enders = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                go.Wait();
                for (var i = t; i < leases.Length; i += 4)
                {
                    leases[i].Dispose();
                    leases[i].Dispose();
                }
            })).ToList();
            enders.ForEach(t => t.Start());
            go.Set();
            pin.Dispose();
            enders.ForEach(t => t.Join());

            Assert.False(pin.IsPinned);
            Assert.Equal(0, pin.ActiveLeases);
            Assert.Equal(round + 1, observer.Count);
        }

        Assert.Equal(0, pinner.ActivePins);
        Assert.Equal(0, pinner.Metrics.LeasedBytes);
        Assert.Equal(0, pinner.Metrics.PinnedBytes);
    }

    private sealed class CountingObserver : IForeignPinObserver
    {
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public void OnUnpinned(ForeignPin pin) => Interlocked.Increment(ref _count);
    }
}
