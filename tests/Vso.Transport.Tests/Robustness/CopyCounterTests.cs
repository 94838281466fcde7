using System.Security.Cryptography;
using Vso.Transport.Tcp;

using Vso.Transport.Tests.Tcp;

namespace Vso.Transport.Tests.Robustness;

/// <summary>DESIGN.md §1–2: the sender never copies up front; Pinned copies nothing, Copy copies each first transmission exactly once.</summary>
public sealed class CopyCounterTests
{
    private const int Size = 2 << 20;

    [Fact]
    public void Pinned_mode_copies_no_byte_of_the_first_transmissions()
    {
        var (info, probe) = Transfer(IdentifyMode.Pinned);
        Assert.Equal(Size, info.FirstTransmissionBytes);
        Assert.Equal(0, info.FirstTransmissionCopiedBytes);

        // Every payload byte sent went out gathered from the caller's pinned memory, under a lease.
        Assert.True(probe.GatheredBytes >= Size, $"gathered {probe.GatheredBytes}");
        Assert.True(probe.MaxLeasedBytes > 0);
        Assert.Equal(0, probe.LeaseMismatches);
    }

    [Fact]
    public void Copy_mode_copies_each_first_transmission_exactly_once()
    {
        var (info, probe) = Transfer(IdentifyMode.Copy);
        Assert.Equal(Size, info.FirstTransmissionBytes);
        Assert.Equal(info.FirstTransmissionBytes, info.FirstTransmissionCopiedBytes);
        Assert.Equal(0, probe.GatheredBytes);
        Assert.Equal(0, probe.MaxLeasedBytes);
    }

    private static (Api.TcpConnectionInfo Info, ProbeLink Probe) Transfer(IdentifyMode mode)
    {
        using var net = new RobustNet(o => o.Tcp.IdentifyMode = mode);
        var (client, server) = net.Connect();
        var data = SimulatedNetwork.Pattern(Size, 21);
        var send = SimulatedNetwork.SendAllAsync(client, data, 100_000);
        var receive = SimulatedNetwork.ReceiveAllAsync(server);
        net.Await(send);
        var (length, hash) = net.Await(receive);
        Assert.Equal(Size, length);
        Assert.Equal(SHA256.HashData(data), hash);
        var info = client.GetInfo();
        Assert.Equal(0, net.Client.PinnedBytes);
        return (info, net.ClientProbe);
    }
}
