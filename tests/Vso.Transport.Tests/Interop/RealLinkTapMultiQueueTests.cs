using System.Buffers.Binary;
using Vso.Transport.Links;
using Vso.Transport.Wire;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// A multi-queue TAP device (IFF_MULTI_QUEUE) opened as queue 0 and queue 1 of 2, as two engine shards would: the first
/// open creates the device, both queues share one MAC, the kernel spreads the flows it sends over the two fds by flow
/// hash (each flow on one queue), and each fd sends frames the kernel answers.
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkTapMultiQueueTests(ITestOutputHelper output)
{
    private const int Flows = 32;

    [RootTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void Two_queues_of_one_device_share_the_flows_and_both_send(bool segmentationOffload)
    {
        using var net = new NetnsHarness(RealLinkKind.Tap);
        var logger = new TestOutputLogger(output);
        var options = new TapLinkOptions
        {
            Name = NetnsHarness.TapDevice,
            Create = true,
            Mtu = 1500,
            KernelAddress = System.Net.IPAddress.Parse(NetnsHarness.KernelAddress),
            SegmentationOffload = segmentationOffload,
        };
        var queues = NetnsHarness.RunIn(net.Client, () => new[] { new TapLink(options, 0, 2, logger), new TapLink(options, 1, 2, logger) });
        try
        {
            Assert.True(queues[0].Created);
            Assert.False(queues[1].Created);
            Assert.Equal(queues[0].HardwareAddress, queues[1].HardwareAddress);
            Assert.Equal([0, 1], queues.Select(q => q.Queue));
            Assert.Contains("multi_queue", NetnsHarness.CheckIn(net.Client, "ip", "-d", "link", "show", NetnsHarness.TapDevice), StringComparison.Ordinal);

            var stackMac = queues[0].HardwareAddress;
            var kernelMac = MacAddress.Parse(NetnsHarness.CheckIn(net.Client, "cat", $"/sys/class/net/{NetnsHarness.TapDevice}/address").Trim());
            NetnsHarness.CheckIn(net.Client, "ip", "neigh", "replace", NetnsHarness.StackAddress, "lladdr", stackMac.ToString(), "dev", NetnsHarness.TapDevice, "nud", "permanent");

            // The kernel sends two datagrams on each of 32 flows (one UDP socket each, so one source port each).
            var collectors = new[] { new Collector(), new Collector() };
            var send = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(30), "bash", "-c",
                $"for i in $(seq 1 {Flows}); do exec 3>/dev/udp/{NetnsHarness.StackAddress}/$((20000+i)); echo a >&3; echo b >&3; exec 3>&-; done");
            Assert.True(send.ExitCode == 0, $"sending the flows: {send}");
            ReceiveUntil(queues, collectors, () => collectors.Sum(c => c.Datagrams.Count) >= 2 * Flows);

            var perQueue = collectors.Select(c => c.Datagrams.Select(d => d.Port).Distinct().Count()).ToArray();
            output.WriteLine($"flows per queue: {perQueue[0]} and {perQueue[1]}");
            Assert.Equal(2 * Flows, collectors.Sum(c => c.Datagrams.Count));
            Assert.True(perQueue[0] > 0 && perQueue[1] > 0, $"all {Flows} flows came to one queue: {perQueue[0]} and {perQueue[1]}");
            foreach (var c in collectors)
            {
                // Both datagrams of a flow come on the same queue: the kernel picks it by the flow's hash.
                Assert.All(c.Datagrams.GroupBy(d => d.Port), g => Assert.Equal(2, g.Count()));
            }

            // Each fd sends: an echo request from each queue, and the kernel's two replies come back (on either queue).
            var batch = new TransmitBatch(4, 1514);
            for (var q = 0; q < 2; q++)
            {
                WriteEchoRequest(batch, stackMac, kernelMac, identifier: (ushort)(0x5100 + q));
                queues[q].Transmit(batch);
                batch.Clear();
                Assert.Equal(1, queues[q].FramesTransmitted);
            }

            ReceiveUntil(queues, collectors, () => collectors.Sum(c => c.EchoReplies.Count) >= 2);
            Assert.Equal([0x5100, 0x5101], collectors.SelectMany(c => c.EchoReplies).Order());
        }
        finally
        {
            foreach (var q in queues)
            {
                q.Dispose();
            }
        }
    }

    [RootFact]
    public void One_link_attaches_to_a_device_made_multi_queue_and_queues_of_a_single_queue_device_are_refused_by_name()
    {
        using var net = new NetnsHarness(RealLinkKind.Tap);
        var logger = new TestOutputLogger(output);
        var attach = new TapLinkOptions { Name = NetnsHarness.TapDevice, Create = false };

        // `ip tuntap add ... multi_queue`: the kernel wants IFF_MULTI_QUEUE from every opener; one link still attaches.
        NetnsHarness.CheckIn(net.Client, "ip", "tuntap", "add", "dev", NetnsHarness.TapDevice, "mode", "tap", "multi_queue");
        NetnsHarness.CheckIn(net.Client, "ip", "link", "set", NetnsHarness.TapDevice, "up");
        using (var single = NetnsHarness.RunIn(net.Client, () => new TapLink(attach, logger)))
        {
            Assert.False(single.Created);
        }

        NetnsHarness.CheckIn(net.Client, "ip", "tuntap", "del", "dev", NetnsHarness.TapDevice, "mode", "tap", "multi_queue");
        NetnsHarness.CheckIn(net.Client, "ip", "tuntap", "add", "dev", NetnsHarness.TapDevice, "mode", "tap");
        NetnsHarness.CheckIn(net.Client, "ip", "link", "set", NetnsHarness.TapDevice, "up");
        var error = Assert.Throws<LinkException>(() => NetnsHarness.RunIn(net.Client, () => new TapLink(attach, 0, 2, logger)));
        Assert.Contains("is not a multi-queue TAP device", error.Message, StringComparison.Ordinal);
        Assert.Contains("multi_queue", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The steering program of a sharded stack belongs to the stack: while attached it sends every UDP flow to queue 0 (only
    /// TCP is spread, by the stack's hash); after the links are disposed, a persistent device is back on the kernel's own
    /// choice, which spreads the same flows over both queues.
    /// </summary>
    [RootFact]
    public void Queue_0_of_a_sharded_stack_attaches_the_steering_program_and_detaches_it_from_a_persistent_device()
    {
        using var net = new NetnsHarness(RealLinkKind.Tap);
        var logger = new TestOutputLogger(output);
        NetnsHarness.CheckIn(net.Client, "ip", "tuntap", "add", "dev", NetnsHarness.TapDevice, "mode", "tap", "multi_queue");
        NetnsHarness.CheckIn(net.Client, "ip", "addr", "add", $"{NetnsHarness.KernelAddress}/24", "dev", NetnsHarness.TapDevice);
        NetnsHarness.CheckIn(net.Client, "ip", "link", "set", NetnsHarness.TapDevice, "up");
        var attach = new TapLinkOptions { Name = NetnsHarness.TapDevice, Create = false, SegmentationOffload = false };

        int[] FlowsPerQueue(bool steer, int port)
        {
            var queues = NetnsHarness.RunIn(net.Client, () => new[] { new TapLink(attach, 0, 2, logger, steer), new TapLink(attach, 1, 2, logger, steer) });
            try
            {
                Assert.Equal(steer, queues[0].Steering);
                Assert.False(queues[1].Steering);
                NetnsHarness.CheckIn(net.Client, "ip", "neigh", "replace", NetnsHarness.StackAddress, "lladdr", queues[0].HardwareAddress.ToString(), "dev", NetnsHarness.TapDevice, "nud", "permanent");
                var collectors = new[] { new Collector(), new Collector() };
                var send = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(30), "bash", "-c",
                    $"for i in $(seq 1 {Flows}); do exec 3>/dev/udp/{NetnsHarness.StackAddress}/$(({port}+i)); echo a >&3; exec 3>&-; done");
                Assert.True(send.ExitCode == 0, $"sending the flows: {send}");
                ReceiveUntil(queues, collectors, () => collectors.Sum(c => c.Datagrams.Count) >= Flows);
                Assert.Equal(Flows, collectors.Sum(c => c.Datagrams.Count));
                return [.. collectors.Select(c => c.Datagrams.Count)];
            }
            finally
            {
                foreach (var q in queues)
                {
                    q.Dispose();
                }
            }
        }

        var steered = FlowsPerQueue(steer: true, 20000);
        var after = FlowsPerQueue(steer: false, 30000);
        output.WriteLine($"UDP flows per queue: steered {steered[0]}, {steered[1]}; after the steering links were disposed {after[0]}, {after[1]}");
        Assert.Equal([Flows, 0], steered);
        Assert.True(after[0] > 0 && after[1] > 0, $"after the steering links were disposed: {after[0]}, {after[1]}");
    }

    private static void ReceiveUntil(TapLink[] queues, Collector[] collectors, Func<bool> done)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!done() && DateTime.UtcNow < deadline)
        {
            for (var q = 0; q < queues.Length; q++)
            {
                // Blocks in poll(2) for the fd, up to 50 ms: no sleep.
                _ = queues[q].WaitForFrames(TimeSpan.FromMilliseconds(50));
                _ = queues[q].Receive(collectors[q], 64);
            }
        }
    }

    private static void WriteEchoRequest(TransmitBatch batch, MacAddress source, MacAddress destination, ushort identifier)
    {
        var frame = batch.Begin();
        var n = EthernetFrame.WriteHeader(frame, destination, source, EtherType.Ipv4);
        var icmp = frame[(n + 20)..];
        var length = IcmpEchoMessage.WriteEcho(icmp, type: 8, identifier, sequence: 1, "multi-queue"u8);
        n += Ipv4Packet.WriteHeader(frame[n..], Ipv4Address.Parse(NetnsHarness.StackAddress), Ipv4Address.Parse(NetnsHarness.KernelAddress), IpProtocol.Icmp, length, identifier);
        batch.Commit(n + length);
    }

    /// <summary>UDP datagrams to the stack's address (by destination port) and echo replies (by identifier) that reached one queue.</summary>
    private sealed class Collector : IFrameReceiver
    {
        public List<(int Port, byte First)> Datagrams { get; } = [];

        public List<int> EchoReplies { get; } = [];

        public void OnFrame(ReadOnlySpan<byte> frame)
        {
            if (EthernetFrame.TryParse(frame, out var ethernet) != WireStatus.Ok || ethernet.EtherType != EtherType.Ipv4
                || Ipv4Packet.TryParse(ethernet.Payload, out var ip) != WireStatus.Ok)
            {
                return;
            }

            var payload = ip.Payload;
            if (ip.Protocol == IpProtocol.Udp && payload.Length > 8)
            {
                Datagrams.Add((BinaryPrimitives.ReadUInt16BigEndian(payload[2..]), payload[8]));
            }
            else if (ip.Protocol == IpProtocol.Icmp && IcmpEchoMessage.TryParse(payload, out var echo) == WireStatus.Ok && echo.Type == 0)
            {
                EchoReplies.Add(echo.Identifier);
            }
        }
    }
}
