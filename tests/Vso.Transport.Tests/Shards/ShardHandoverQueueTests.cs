using Vso.Transport.Engine;

namespace Vso.Transport.Tests.Shards;

/// <summary>The hand-over ring between two shards: bounded (a full ring refuses, the router drops and counts), FIFO, slots reused.</summary>
public sealed class ShardHandoverQueueTests
{
    [Fact]
    public void A_full_ring_refuses_and_frees_slots_as_the_consumer_reads()
    {
        var queue = new ShardHandoverQueue(2, 64);
        Assert.True(queue.IsEmpty);
        Assert.True(queue.TryEnqueue([1, 2, 3]));
        Assert.True(queue.TryEnqueue([4]));
        Assert.False(queue.TryEnqueue([5]));          // full: the router drops it and counts vso.shard.handover_drops
        Assert.False(queue.TryEnqueue(new byte[65])); // longer than a slot
        Assert.False(queue.IsEmpty);
    }

    [Fact]
    public void Capacity_must_be_a_power_of_two()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShardHandoverQueue(3, 64));
        Assert.Equal(256, new ShardHandoverQueue(256, 64).Capacity);
    }
}
