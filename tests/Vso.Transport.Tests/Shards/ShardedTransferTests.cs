using System.Security.Cryptography;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Tests.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Shards;

/// <summary>
/// Two stacks of N shards each over a simulated wire between two N-queue devices, in virtual time: 100 connections opened
/// by one stack are spread round robin over its shards, land on the same shard of the other stack (the flow hash is
/// symmetric, and the device puts each segment on the queue of its flow), and carry byte-exact data, also under loss.
/// </summary>
public sealed class ShardedTransferTests
{
    private const int Connections = 100;

    [Theory]
    [InlineData(2, 0.0)]
    [InlineData(4, 0.0)]
    [InlineData(2, 0.01)]
    [InlineData(4, 0.01)]
    public void Hundred_connections_spread_over_the_shards_transfer_byte_exact(int shards, double loss)
    {
        SynchronizationContext.SetSynchronizationContext(null);
        var clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreateMultiQueuePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMilliseconds(2) }, shards, shards);
        ILink Wrap(SimulatedLink link, int i, ulong side) =>
            loss == 0 ? link : new FaultInjector(link, clock, new FaultOptions { Seed = side * 100 + (ulong)i + 1, LossRate = loss });
        using var client = new VsoStack((i, _) => Wrap(a[i], i, 1), shards, Options(SimulatedNetwork.ClientAddress), clock);
        using var server = new VsoStack((i, _) => Wrap(b[i], i, 2), shards, Options(SimulatedNetwork.ServerAddress), clock);
        var driver = new VirtualTimeDriver(clock, client, server);
        using var listener = server.Listen(80);

        var accepted = new List<VsoConnection>();
        var serverSends = new List<Task>();
        var expected = new Dictionary<int, byte[]>();
        async Task AcceptAll()
        {
            for (var i = 0; i < Connections; i++)
            {
                var connection = await listener.AcceptAsync().ConfigureAwait(false);
                accepted.Add(connection);

                // The client tells which connection it is in its first two bytes; the server answers with that connection's data.
                var id = new byte[2];
                var got = 0;
                while (got < 2)
                {
                    got += await connection.ReceiveAsync(id.AsMemory(got)).ConfigureAwait(false);
                }

                var index = id[0] | (id[1] << 8);
                serverSends.Add(SimulatedNetwork.SendAllAsync(connection, expected[index], 8192));
            }
        }

        for (var i = 0; i < Connections; i++)
        {
            expected[i] = SimulatedNetwork.Pattern(16_384 + (i * 997), i);
        }

        var acceptLoop = AcceptAll();
        var receives = new Task<(long Length, byte[] Hash)>[Connections];
        var clients = new VsoConnection[Connections];
        for (var i = 0; i < Connections; i++)
        {
            var index = i;
            receives[i] = RunClientAsync(client, index, clients);
        }

        Assert.True(driver.RunUntil(() => Array.TrueForAll(receives, r => r.IsCompleted) && acceptLoop.IsCompleted, TimeSpan.FromMinutes(10)), "The transfers did not complete in virtual time.");
        Complete(acceptLoop);
        for (var i = 0; i < Connections; i++)
        {
            var (length, hash) = Complete(receives[i]);
            Assert.Equal(expected[i].Length, length);
            Assert.Equal(SHA256.HashData(expected[i]), hash);
        }

        // Active opens go round robin; each lands on the server shard its flow hashes to, the same index (symmetric hash).
        var clientPerShard = new int[shards];
        var serverPerShard = new int[shards];
        foreach (var connection in clients)
        {
            var shard = connection.Endpoint.Shard.ShardIndex;
            clientPerShard[shard]++;
            var local = connection.LocalEndPoint!;
            var remote = connection.RemoteEndPoint!;
            Assert.Equal(shard, FlowHash.ShardOf(new ConnectionId(client.Ipv4, (ushort)local.Port, Ipv4Address.FromIPAddress(remote.Address), (ushort)remote.Port), shards));
        }

        foreach (var connection in accepted)
        {
            serverPerShard[connection.Endpoint.Shard.ShardIndex]++;
        }

        Assert.All(clientPerShard, count => Assert.Equal(Connections / shards, count));
        Assert.Equal(clientPerShard, serverPerShard);

        // TCP never needed a hand-over (the device hashes as the stack does); ARP did (queue 0 takes it, every shard learns).
        Assert.True(client.ShardHandovers > 0 && server.ShardHandovers > 0);
        foreach (var shard in client.Shards.Concat(server.Shards))
        {
            Assert.Equal(0, shard.HandoverDrops);
            Assert.Equal(0, shard.ContainedExceptions);
        }
    }

    /// <summary>Connects, says which connection it is, and reads the server's answer to its end.</summary>
    private static async Task<(long Length, byte[] Hash)> RunClientAsync(VsoStack client, int index, VsoConnection[] clients)
    {
        var connection = await client.ConnectAsync(SimulatedNetwork.ServerAddress, 80).ConfigureAwait(false);
        clients[index] = connection;
        await connection.SendAsync(new byte[] { (byte)index, (byte)(index >> 8) }).ConfigureAwait(false);
        return await SimulatedNetwork.ReceiveAllAsync(connection).ConfigureAwait(false);
    }

    // The driver has completed the task in virtual time.
    private static T Complete<T>(Task<T> task) => task.GetAwaiter().GetResult();

    private static void Complete(Task task) => task.GetAwaiter().GetResult();

    private static VsoStackOptions Options(Ipv4Address address) =>
        new() { Address = address, PrefixLength = 24, Tcp = new TcpSettings { IsnKey = [1, 2, 3, 4] }, InlineContinuations = true };
}
