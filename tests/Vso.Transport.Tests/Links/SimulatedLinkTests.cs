using System.Runtime.InteropServices;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Links;

public sealed class SimulatedLinkTests
{
    private const long T0 = 1_000_000;

    [Fact]
    public void Pair_has_documented_defaults()
    {
        var (a, b) = SimulatedLink.CreatePair(new VirtualClock());
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:01"), a.HardwareAddress);
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:02"), b.HardwareAddress);
        Assert.Equal(1500, a.Mtu);
        Assert.Equal(1500, b.Mtu);
        Assert.Equal(long.MaxValue, a.NextEventMicroseconds);
        Assert.Equal(long.MaxValue, b.NextEventMicroseconds);
    }

    [Fact]
    public void Pair_delivers_frames_in_order_after_the_propagation_delay()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMilliseconds(5) });
        var batch = new TransmitBatch(8, LinkTestKit.FrameCapacity);
        var got = new FrameCollector(clock);

        LinkTestKit.Send(a, batch, firstId: 0, count: 3, length: 60);
        clock.AdvanceTo(T0 + 1000);
        LinkTestKit.Send(a, batch, firstId: 3, count: 2, length: 100);

        Assert.Equal(T0 + 5000, b.NextEventMicroseconds);
        Assert.Equal(long.MaxValue, a.NextEventMicroseconds); // nothing travels towards A
        Assert.Equal(5, b.PendingFrames);

        clock.AdvanceTo(T0 + 4999);
        Assert.Equal(0, b.Receive(got, 100));
        Assert.False(b.WaitForFrames(TimeSpan.FromSeconds(1)));

        clock.AdvanceTo(T0 + 5000);
        Assert.True(b.WaitForFrames(TimeSpan.Zero));
        Assert.Equal(3, b.Receive(got, 100));
        Assert.Equal([0u, 1u, 2u], got.Ids);
        Assert.Equal(T0 + 6000, b.NextEventMicroseconds);

        clock.AdvanceTo(T0 + 6000);
        Assert.Equal(2, b.Receive(got, 100));
        Assert.Equal([0u, 1u, 2u, 3u, 4u], got.Ids);
        Assert.Equal(long.MaxValue, b.NextEventMicroseconds);
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(LinkTestKit.Frame((uint)i, i < 3 ? 60 : 100), got.Frames[i]);
        }

        Assert.Equal(5, a.FramesSent);
        Assert.Equal((3 * 60) + (2 * 100), a.BytesSent);
        Assert.Equal(5, b.FramesReceived);
        Assert.Equal((3 * 60) + (2 * 100), b.BytesReceived);
        Assert.Equal(0, b.FramesSent);
        Assert.Equal(0, a.FramesReceived);
    }

    [Fact]
    public void Pair_carries_both_directions_independently()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock);
        var batch = new TransmitBatch(4, LinkTestKit.FrameCapacity);
        LinkTestKit.Send(a, batch, 10, 1, 64);
        LinkTestKit.Send(b, batch, 20, 2, 64);
        var atA = new FrameCollector(clock);
        var atB = new FrameCollector(clock);
        Assert.Equal(2, a.Receive(atA, 10));
        Assert.Equal(1, b.Receive(atB, 10));
        Assert.Equal([20u, 21u], atA.Ids);
        Assert.Equal([10u], atB.Ids);
    }

    [Fact]
    public void Receive_hands_over_at_most_maxFrames()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock);
        var batch = new TransmitBatch(8, LinkTestKit.FrameCapacity);
        LinkTestKit.Send(a, batch, 0, 5, 60);
        var got = new FrameCollector(clock);
        Assert.Equal(0, b.Receive(got, 0));
        Assert.Equal(2, b.Receive(got, 2));
        Assert.Equal(3, b.Receive(got, 10));
        Assert.Equal(0, b.Receive(got, 10));
        Assert.Equal([0u, 1u, 2u, 3u, 4u], got.Ids);
    }

    [Fact]
    public void Transmit_reads_the_linear_part_and_every_gather()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock);
        var batch = new TransmitBatch(2, 128);
        var payload = GC.AllocateArray<byte>(300, pinned: true);
        for (var i = 0; i < payload.Length; i++)
        {
            payload[i] = (byte)(255 - i);
        }

        var linear = LinkTestKit.Frame(7, 40);
        linear.CopyTo(batch.Begin());
        Assert.True(batch.TryAddGather(Marshal.UnsafeAddrOfPinnedArrayElement(payload, 0), 100));
        Assert.True(batch.TryAddGather(Marshal.UnsafeAddrOfPinnedArrayElement(payload, 200), 37));
        batch.Commit(40);
        a.Transmit(batch);

        var got = new FrameCollector(clock);
        Assert.Equal(1, b.Receive(got, 10));
        var expected = linear.Concat(payload[..100]).Concat(payload[200..237]).ToArray();
        Assert.Equal(expected, got.Frames[0]);
        Assert.Equal(177, a.BytesSent);
    }

    [Fact]
    public void Transmit_copies_so_the_batch_and_gathered_memory_can_be_reused_at_once()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMilliseconds(1) });
        var batch = new TransmitBatch(2, 128);
        var payload = GC.AllocateArray<byte>(50, pinned: true);
        payload.AsSpan().Fill(0xAB);
        var linear = LinkTestKit.Frame(1, 20);
        linear.CopyTo(batch.Begin());
        batch.TryAddGather(Marshal.UnsafeAddrOfPinnedArrayElement(payload, 0), 50);
        batch.Commit(20);
        a.Transmit(batch);

        // The engine ends the leases and rebuilds the batch as soon as Transmit returns.
        batch.Clear();
        payload.AsSpan().Fill(0xEE);
        batch.Begin().Fill(0xEE);
        batch.Commit(20);

        clock.Advance(TimeSpan.FromMilliseconds(1));
        var got = new FrameCollector(clock);
        Assert.Equal(1, b.Receive(got, 10));
        Assert.Equal(linear.Concat(Enumerable.Repeat((byte)0xAB, 50)).ToArray(), got.Frames[0]);
    }

    [Fact]
    public void Frames_longer_than_mtu_plus_ethernet_header_are_dropped_and_counted()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { Mtu = 576 });
        var batch = new TransmitBatch(4, 1024);
        LinkTestKit.Add(batch, 1, 576 + 14);
        LinkTestKit.Add(batch, 2, 576 + 15);
        a.Transmit(batch);
        var got = new FrameCollector(clock);
        Assert.Equal(1, b.Receive(got, 10));
        Assert.Equal([1u], got.Ids);
        Assert.Equal(1, a.FramesDroppedTooLong);
        Assert.Equal(1, a.FramesSent);
    }

    [Fact]
    public void A_receiver_may_answer_from_inside_OnFrame()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock);
        var batch = new TransmitBatch(4, LinkTestKit.FrameCapacity);
        LinkTestKit.Send(a, batch, 1, 3, 60);
        var echo = new Echo(b);
        Assert.Equal(3, b.Receive(echo, 10));
        var got = new FrameCollector(clock);
        Assert.Equal(3, a.Receive(got, 10));
        Assert.Equal([1001u, 1002u, 1003u], got.Ids);
    }

    [Fact]
    public void Dispose_returns_pending_frames_and_cuts_the_wire()
    {
        var clock = new VirtualClock(T0);
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMilliseconds(1) });
        var batch = new TransmitBatch(4, LinkTestKit.FrameCapacity);
        LinkTestKit.Send(a, batch, 1, 2, 60);
        b.Dispose();
        Assert.Equal(0, b.PendingFrames);
        LinkTestKit.Send(a, batch, 3, 1, 60);
        Assert.Equal(1, b.FramesDroppedDisposed);
        Assert.Throws<ObjectDisposedException>(() => b.Receive(Discard.Instance, 1));
        Assert.Throws<ObjectDisposedException>(() => b.Transmit(batch));
    }

    [Fact]
    public void Options_are_validated()
    {
        var clock = new VirtualClock();
        Assert.Throws<ArgumentOutOfRangeException>(() => SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { Mtu = 67 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromTicks(-10) }));
    }

    private sealed class Echo(ILink link) : IFrameReceiver
    {
        private readonly TransmitBatch _batch = new(1, LinkTestKit.FrameCapacity);

        public void OnFrame(ReadOnlySpan<byte> frame)
        {
            LinkTestKit.Add(_batch, LinkTestKit.IdOf(frame) + 1000, frame.Length);
            link.Transmit(_batch);
            _batch.Clear();
        }
    }
}
