using System.Security.Cryptography;
using Vso.Transport.Links;
using Vso.Transport.Tests.Tcp;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Memory;

/// <summary>
/// A receiver that reneges (drops out-of-order data it had SACKed, at the soft memory mark) and a sender that copes: the
/// sender keeps SACKed data until it is cumulatively acknowledged and forgets SACK marks after a timeout (RFC 2018 §8),
/// so a lossy transfer through a stack whose receive memory is a single 64 KiB window still arrives byte for byte.
/// </summary>
public sealed class RenegingTransferTests(ITestOutputHelper output)
{
    [Fact]
    public void A_transfer_through_a_pruning_receiver_arrives_intact()
    {
        const int Size = 4 << 20;
        using var net = new SimulatedNetwork(
            clientFaults: new FaultOptions { LossRate = 0.05, Seed = 7 },
            configure: tcp => tcp.ReceiveBufferSize = 64 * 1024,
            configureServer: tcp =>
            {
                // Four blocks: the window's worth. Out-of-order data that would take the fourth is pruned.
                tcp.ReceiveBufferSize = 64 * 1024;
                tcp.MemoryLimit = 64 * 1024;
            });
        var (client, server) = net.Connect();
        var data = SimulatedNetwork.Pattern(Size, 21);
        var sending = SimulatedNetwork.SendAllAsync(client, data, 256 * 1024);
        var receiving = SimulatedNetwork.ReceiveAllAsync(server);
        Assert.True(net.Run(() => receiving.IsCompleted && sending.IsCompleted, TimeSpan.FromHours(1)), "the transfer did not finish");

        var memory = net.Server.Core.Tcp.Memory;
        output.WriteLine($"{memory.PrunedBytes} out-of-order bytes pruned; {client.GetInfo().Timeouts} timeouts");
        Assert.True(sending.IsCompletedSuccessfully);
        var (length, hash) = net.Await(receiving, TimeSpan.Zero);
        Assert.Equal(Size, length);
        Assert.Equal(SHA256.HashData(data), hash);
        Assert.True(memory.PrunedBytes > 0, "the receiver never pruned: the test does not exercise reneging");
        Assert.Equal(0, memory.HeldBytes);
    }
}
