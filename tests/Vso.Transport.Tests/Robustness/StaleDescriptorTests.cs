using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

using Vso.Transport.Tests.Tcp;

namespace Vso.Transport.Tests.Robustness;

/// <summary>
/// DESIGN.md §2: a stale descriptor (its memory released, another generation, a range outside the pinned memory)
/// is refused by the host with a clear error and never read; a host that refuses makes the connection fail loudly.
/// </summary>
public sealed class StaleDescriptorTests
{
    private const byte Sentinel = 0xA5;

    [Fact]
    public void The_host_refuses_a_descriptor_whose_send_already_completed()
    {
        using var pool = new PinnedBlockPool();
        using var net = new RobustNet();
        var (client, server) = net.Connect();
        var block = pool.Rent();
        block.GetSpan().Fill(7);
        var send = client.SendAsync(block.Memory[..1000]);
        var buffer = new byte[4096];
        Assert.Equal(1000, net.Await(server.ReceiveAsync(buffer).AsTask()));
        net.Await(send);
        Assert.Equal(0, net.Client.PinnedBytes);

        // The first send of the connection was slot 0, generation 1: it is released now.
        var host = client.SendHost;
        var stale = Descriptor(block.Address, 1000, slot: 0, generation: 1);
        AssertRefused(host, net.Client, stale, 0, 100, StaleDescriptorReason.Released);

        // A slot this connection never registered.
        AssertRefused(host, net.Client, Descriptor(block.Address, 1000, slot: 7, generation: 1), 0, 100, StaleDescriptorReason.UnknownBlock);
        AssertRefused(host, net.Client, Descriptor(block.Address, 1000, slot: -1, generation: 1), 0, 100, StaleDescriptorReason.UnknownBlock);

        // Acknowledged or Failed for a stale descriptor change nothing.
        host.Acknowledged(stale);
        host.Failed(stale, new InvalidOperationException("late"));
        Assert.Equal(0, net.Client.PinnedBytes);
        block.Dispose();
    }

    [Fact]
    public void The_host_refuses_a_range_outside_the_pinned_memory_and_a_wrong_generation_of_a_live_send()
    {
        using var pool = new PinnedBlockPool();
        using var net = new RobustNet();
        var (client, _) = net.Connect();

        // Cut the wire so the send stays unacknowledged: its slot (0, generation 1) is live.
        net.ClientProbe.Down = true;
        var block = pool.Rent();
        for (var i = 0; i < block.Length; i++)
        {
            block.GetSpan()[i] = (byte)i;
        }

        var data = block.Memory.Slice(100, 2000);
        var address = block.Address + 100;
        var send = client.SendAsync(data);
        net.Driver.RunIdle();
        Assert.False(send.IsCompleted);
        Assert.Equal(2000, net.Client.PinnedBytes);
        var host = client.SendHost;

        // The control: the live descriptor is identified, both ways.
        var live = Descriptor(address, 2000, slot: 0, generation: 1);
        var copy = new byte[50];
        host.CopyTo(live, 10, copy);
        Assert.Equal(block.GetSpan().Slice(110, 50).ToArray(), copy);
        var lease = host.Lease(live, 1990, 10);
        Assert.Equal(10, net.Client.LeasedBytes);
        Assert.Equal(address + 1990, lease.Address);
        lease.Dispose();
        Assert.Equal(0, net.Client.LeasedBytes);

        // Out of range: before the pinned memory, past its end, longer than it, negative offsets and lengths, past the descriptor.
        AssertRefused(host, net.Client, Descriptor(address - 1, 2000, 0, 1), 0, 10, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address + 1, 2000, 0, 1), 0, 10, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address + 2000, 1, 0, 1), 0, 1, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address, 2001, 0, 1), 0, 10, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address, 2000, 0, 1), 1995, 10, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address, 2000, 0, 1), -1, 10, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address, 2000, 0, 1), 0, -1, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address, -5, 0, 1), 0, 1, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(nint.MaxValue - 4, 2000, 0, 1), 0, 10, StaleDescriptorReason.OutOfRange);
        AssertRefused(host, net.Client, Descriptor(address + 1000, 1000, 0, 1), int.MaxValue, 10, StaleDescriptorReason.OutOfRange);

        // Right slot, wrong generation (a later or an earlier use of the slot).
        AssertRefused(host, net.Client, Descriptor(address, 2000, 0, 2), 0, 10, StaleDescriptorReason.GenerationMismatch);
        AssertRefused(host, net.Client, Descriptor(address, 2000, 0, 0), 0, 10, StaleDescriptorReason.GenerationMismatch);

        // None of that touched the live send.
        Assert.False(send.IsCompleted);
        Assert.Equal(2000, net.Client.PinnedBytes);
        client.Abort();
        net.Run(() => send.IsCompleted);
        Assert.IsType<TcpConnectionException>(send.Exception!.InnerException);
        Assert.Equal(0, net.Client.PinnedBytes);
        Assert.Equal(0, net.Client.LeasedBytes);
        block.Dispose();
    }

    [Theory]
    [InlineData(IdentifyMode.Pinned, 0)]
    [InlineData(IdentifyMode.Copy, 0)]
    [InlineData(IdentifyMode.Pinned, 20)]
    [InlineData(IdentifyMode.Copy, 20)]
    public void A_host_that_refuses_its_descriptor_fails_the_connection_loudly(IdentifyMode mode, int refuseAfter)
    {
        using var net = new RobustNet(o => o.Tcp.IdentifyMode = mode);
        var (client, server) = net.Connect();
        var refusing = new RefusingHost(client.Endpoint.TcpHost, refuseAfter);
        client.Tcp!.SetHost(refusing);

        var data = SimulatedNetwork.Pattern(1 << 20, 3);
        var sends = new List<Task>();
        for (var offset = 0; offset < data.Length; offset += 64 * 1024)
        {
            sends.Add(client.SendAsync(data.AsMemory(offset, 64 * 1024)));
        }

        var receive = SimulatedNetwork.ReceiveAllAsync(server);
        Assert.True(net.Run(() => sends.TrueForAll(t => t.IsCompleted) && receive.IsCompleted && client.Closed.IsCompleted && server.Closed.IsCompleted, TimeSpan.FromMinutes(1)));

        Assert.True(refusing.Refusals > 0);

        // Every pending send faults with the connection's error, which names the refusal.
        var failed = sends.Where(t => t.IsFaulted).ToList();
        Assert.NotEmpty(failed);
        Assert.All(failed, t => Assert.IsType<TcpConnectionException>(t.Exception!.InnerException));
        Assert.Contains("refused a send descriptor", failed[0].Exception!.InnerException!.Message, StringComparison.Ordinal);
        Assert.Equal(TcpState.Closed, client.GetInfo().State);

        // The peer got RST.
        var peerError = Assert.IsType<TcpConnectionException>(receive.Exception!.InnerException);
        Assert.Equal(TcpError.Reset, peerError.Error);

        // Nothing escaped the engine; nothing stays pinned.
        Assert.Equal(0, net.Client.ContainedExceptions);
        Assert.Equal(0, net.Server.ContainedExceptions);
        Assert.Equal(0, net.Client.PinnedBytes);
        Assert.Equal(0, net.Client.LeasedBytes);
        Assert.Equal(0, net.Client.ConnectionCount);
    }

    private static VsoSendRange Descriptor(nint address, int length, long slot, long generation) => new(address, length, slot, generation);

    private static void AssertRefused(IVsoSendHost host, VsoStack stack, VsoSendRange descriptor, int offset, int length, StaleDescriptorReason reason)
    {
        // CopyTo takes its length from the destination, so a negative length can only be asked of Lease.
        if (length >= 0)
        {
            var destination = new byte[Math.Min(length, 4096)];
            destination.AsSpan().Fill(Sentinel);
            var copyError = Assert.Throws<StaleDescriptorException>(() => host.CopyTo(descriptor, offset, destination));
            Assert.Equal(reason, copyError.Reason);
            Assert.Contains("No memory was read", copyError.Message, StringComparison.Ordinal);
            Assert.All(destination, b => Assert.Equal(Sentinel, b));
        }

        var leasedBefore = stack.LeasedBytes;
        var leaseError = Assert.Throws<StaleDescriptorException>(() => host.Lease(descriptor, offset, length));
        Assert.Equal(reason, leaseError.Reason);
        Assert.Equal(leasedBefore, stack.LeasedBytes);
    }

    /// <summary>Forwards to the real host but refuses to identify bytes after <c>refuseAfter</c> requests, as a host whose memory vanished would.</summary>
    private sealed class RefusingHost(ISendHost inner, int refuseAfter) : ISendHost
    {
        private int _requests;

        public int Refusals { get; private set; }

        public void CopyTo(SendDescriptor descriptor, int offset, Span<byte> destination)
        {
            Check(descriptor);
            inner.CopyTo(descriptor, offset, destination);
        }

        public PinLease Lease(SendDescriptor descriptor, int offset, int length)
        {
            Check(descriptor);
            return inner.Lease(descriptor, offset, length);
        }

        public void Acknowledged(SendDescriptor descriptor) => inner.Acknowledged(descriptor);

        public void Failed(SendDescriptor descriptor, Exception error) => inner.Failed(descriptor, error);

        private void Check(SendDescriptor descriptor)
        {
            if (++_requests > refuseAfter)
            {
                Refusals++;
                throw new StaleDescriptorException($"Test host refuses descriptor slot {descriptor.HostToken}: its memory is gone.");
            }
        }
    }
}
