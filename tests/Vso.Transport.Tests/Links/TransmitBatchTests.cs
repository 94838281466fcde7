using Vso.MemoryPinning;
using Vso.Transport.Links;

namespace Vso.Transport.Tests.Links;

/// <summary>The pin leases a <see cref="TransmitBatch"/> holds for the frames it carries.</summary>
public sealed class TransmitBatchTests
{
    [Fact]
    public void A_lease_taken_by_the_link_outlives_Clear_and_the_others_of_its_frame_do_not()
    {
        var owner = new CountingOwner();
        var batch = new TransmitBatch(capacity: 2, frameCapacity: 64);
        batch.Begin();
        batch.HoldLease(owner.Lease(0));
        batch.Commit(14);
        batch.Begin();
        batch.HoldLease(owner.Lease(1));
        batch.HoldLease(owner.Lease(2));
        batch.Commit(14);

        // Frame 1's second lease goes to the link (an AF_XDP packet sent in place, ended at its completion).
        Assert.Equal((1, 2), (batch.LeaseCount(0), batch.LeaseCount(1)));
        var taken = batch.TakeLease(1, 1);
        batch.Clear();
        Assert.Equal(2, owner.Ended);
        taken.Dispose();
        Assert.Equal(3, owner.Ended);
    }

    [Fact]
    public void Holding_more_leases_than_the_batch_has_room_for_throws_and_leaves_the_lease_to_the_caller()
    {
        var owner = new CountingOwner();
        var batch = new TransmitBatch(capacity: 1, frameCapacity: 64);
        batch.Begin();
        for (var i = 0; i < TransmitBatch.MaxGather; i++)
        {
            Assert.True(batch.CanHoldLease);
            batch.HoldLease(owner.Lease(i));
        }

        Assert.False(batch.CanHoldLease);
        var extra = owner.Lease(100);
        Assert.Throws<InvalidOperationException>(() => batch.HoldLease(extra));
        Assert.Equal(0, owner.Ended);

        batch.Commit(14);
        batch.Clear();
        Assert.Equal(TransmitBatch.MaxGather, owner.Ended); // every lease taken was ended, the refused one was not
        extra.Dispose();
        Assert.Equal(TransmitBatch.MaxGather + 1, owner.Ended);
    }

    [Fact]
    public void Cancel_ends_the_leases_of_the_abandoned_frame_only()
    {
        var owner = new CountingOwner();
        var batch = new TransmitBatch(capacity: 3, frameCapacity: 64);
        batch.Begin();
        batch.HoldLease(owner.Lease(1));
        batch.HoldLease(owner.Lease(2));
        batch.Commit(14);

        batch.Begin();
        batch.HoldLease(owner.Lease(3));
        batch.Cancel();
        Assert.Equal(1, owner.Ended);

        // Cancelled frames do not use up the room: the next frame still takes its full gather list.
        batch.Begin();
        for (var i = 0; i < TransmitBatch.MaxGather; i++)
        {
            batch.HoldLease(owner.Lease(10 + i));
        }

        // A Cancel with no frame begun since the last Commit leaves the committed frames' leases alone.
        batch.Commit(14);
        batch.Cancel();
        Assert.Equal(1, owner.Ended);

        batch.Clear();
        Assert.Equal(3 + TransmitBatch.MaxGather, owner.Ended);
    }

    private sealed class CountingOwner : IPinLeaseOwner
    {
        public int Ended { get; private set; }

        public PinLease Lease(long token) => new(this, 0x1000, 16, token);

        public void EndLease(nint address, int length, long token) => Ended++;
    }
}
