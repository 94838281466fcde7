using System.Security.Cryptography;
using Vso.Transport.Links;

namespace Vso.Transport.Tests.Tcp;

public sealed class BulkTransferTests
{
    [Fact]
    public void One_MiB_each_way_without_faults_arrives_intact()
    {
        using var net = new SimulatedNetwork();
        var (client, server) = net.Connect();
        var up = SimulatedNetwork.Pattern(1 << 20, 1);
        var down = SimulatedNetwork.Pattern(1 << 20, 2);

        var sendUp = SimulatedNetwork.SendAllAsync(client, up, 64 * 1024);
        var sendDown = SimulatedNetwork.SendAllAsync(server, down, 64 * 1024);
        var receiveUp = SimulatedNetwork.ReceiveAllAsync(server);
        var receiveDown = SimulatedNetwork.ReceiveAllAsync(client);

        var (upLength, upHash) = net.Await(receiveUp);
        var (downLength, downHash) = net.Await(receiveDown);
        net.Await(sendUp);
        net.Await(sendDown);

        Assert.Equal(up.Length, upLength);
        Assert.Equal(SHA256.HashData(up), upHash);
        Assert.Equal(down.Length, downLength);
        Assert.Equal(SHA256.HashData(down), downHash);
    }
}
