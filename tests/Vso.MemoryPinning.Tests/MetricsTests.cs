using System.Diagnostics.Metrics;

namespace Vso.MemoryPinning.Tests;

public sealed class MetricsTests
{
    [Fact]
    public void Counters_rise_with_rent_lease_and_lock_and_return_to_exactly_zero()
    {
        var metrics = new PinningMetrics();
        var locker = new PageLocker(new FakeLockSyscalls(), Environment.SystemPageSize);
        var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { Mlock = true }, metrics, locker, Environment.SystemPageSize);
        var pinner = new ForeignMemoryPinner(mlock: true, metrics, locker);

        var a = pool.Rent();
        var b = pool.Rent();
        var poolLease = a.Lease(0, 1000);
        var foreign = pinner.Pin(new byte[300]);
        var foreignLease = foreign.Lease(10, 20);

        Assert.Equal(2 * 4096 + 300, metrics.PinnedBytes);
        Assert.Equal(1020, metrics.LeasedBytes);
        Assert.True(metrics.LockedBytes >= 256 * 1024 + 4096);

        a.Dispose();
        Assert.Equal(2 * 4096 + 300, metrics.PinnedBytes); // a is leased: still pinned
        poolLease.Dispose();
        Assert.Equal(4096 + 300, metrics.PinnedBytes);
        b.Dispose();
        foreign.Dispose();
        foreignLease.Dispose();
        pool.Dispose();

        Assert.Equal(0, metrics.PinnedBytes);
        Assert.Equal(0, metrics.LeasedBytes);
        Assert.Equal(0, metrics.LockedBytes);
        Assert.Equal(0, locker.LockedBytes);
    }

    [Fact]
    public void Instances_feed_the_global_aggregate()
    {
        // Other tests run in parallel and move Global, so compare with a delta while holding a large amount.
        var metrics = new PinningMetrics();
        using var pool = new PinnedBlockPool(new PinnedBlockPoolOptions(), metrics);
        var blocks = Enumerable.Range(0, 64).Select(_ => pool.Rent()).ToList();
        Assert.Equal(64 * 4096, metrics.PinnedBytes);
        Assert.True(PinningMetrics.Global.PinnedBytes >= 64 * 4096);
        blocks.ForEach(b => b.Dispose());
        Assert.Equal(0, metrics.PinnedBytes);
    }

    [Fact]
    public void A_pool_made_to_share_counters_adds_into_the_first_pools_figures()
    {
        // The public way to read several pools as one (the Kestrel transport's block classes): no metrics object needed.
        using var small = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 64 * 1024 });
        using var large = new PinnedBlockPool(new PinnedBlockPoolOptions { BlockSize = 16384, SlabSize = 64 * 1024 }, sharesCountersWith: small);
        using var alone = new PinnedBlockPool(new PinnedBlockPoolOptions { SlabSize = 64 * 1024 });
        var a = small.Rent();
        var b = large.Rent();
        var c = alone.Rent();
        var lease = b.Lease(0, 100);

        Assert.Equal(4096 + 16384, small.PinnedBytes);
        Assert.Equal(small.PinnedBytes, large.PinnedBytes);
        Assert.Equal(100, small.LeasedBytes);
        Assert.Equal(4096, alone.PinnedBytes);

        lease.Dispose();
        b.Dispose();
        Assert.Equal(4096, small.PinnedBytes);
        Assert.Equal(0, small.LeasedBytes);
        a.Dispose();
        c.Dispose();
        Assert.Equal(0, large.PinnedBytes);
        Assert.Equal(0, alone.PinnedBytes);
    }

    [Fact]
    public void Meter_publishes_the_three_observable_counters()
    {
        _ = PinningMetrics.Global;
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == PinningMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            lock (seen)
            {
                seen[instrument.Name] = value;
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(["vso.pinning.leased_bytes", "vso.pinning.locked_bytes", "vso.pinning.pinned_bytes"], seen.Keys.Order());
        Assert.All(seen.Values, v => Assert.True(v >= 0));
    }
}
