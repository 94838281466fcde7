using Vso.Transport.Links;
using Vso.Transport.Wire;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// The AF_PACKET socket filter in the kernel: with the stack's address and no gateway, SYNs from spoofed off-subnet
/// sources never reach the socket, while on-link ones do; without the filter both do.
/// </summary>
[Collection("RealLinks")]
public sealed class RealLinkFilterTests(ITestOutputHelper output)
{
    [RootTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void Spoofed_off_subnet_sources_are_dropped_in_the_kernel_only_with_the_filter(bool filter)
    {
        using var net = new NetnsHarness(RealLinkKind.AfPacket);
        using var link = NetnsHarness.RunIn(net.Server, () => new AfPacketLink(new AfPacketLinkOptions
        {
            InterfaceName = NetnsHarness.ServerDevice,
            FilterAddress = filter ? Ipv4Address.Parse(NetnsHarness.StackAddress) : null,
            FilterOnLinkPrefixLength = 24,
        }));

        // No stack answers ARP here: the client's kernel is told the MAC so that its frames go out.
        Shell.Check("ip", "-n", net.Client, "neigh", "replace", NetnsHarness.StackAddress, "lladdr", link.HardwareAddress.ToString(), "dev", NetnsHarness.ClientDevice);
        var offSubnet = Received(net, link, "203.0.113.9");
        var onLink = Received(net, link, "198.18.0.77");
        output.WriteLine($"filter {filter}: off-subnet SYNs received {offSubnet}, on-link SYNs received {onLink}");

        Assert.Equal(5, onLink);
        Assert.Equal(filter ? 0 : 5, offSubnet);
    }

    /// <summary>Five SYNs from <paramref name="source"/> to the stack's address; returns the TCP frames the link handed over.</summary>
    private static int Received(NetnsHarness net, AfPacketLink link, string source)
    {
        var sink = new TcpCounter();
        link.Receive(sink, int.MaxValue);
        sink.Count = 0;
        var sent = NetnsHarness.Exec(net.Client, TimeSpan.FromSeconds(10), "hping3", "-q", "-S", "-p", "8080", "-c", "5", "-i", "u20000", "-a", source, NetnsHarness.StackAddress);
        Assert.False(sent.TimedOut, "hping3 did not finish");
        var deadline = Environment.TickCount64 + 1000;
        while (Environment.TickCount64 < deadline && sink.Count < 5)
        {
            link.Receive(sink, int.MaxValue);
            Thread.Sleep(10);
        }

        // A little longer: frames that should not come would show up here.
        Thread.Sleep(100);
        link.Receive(sink, int.MaxValue);
        return sink.Count;
    }

    private sealed class TcpCounter : IFrameReceiver
    {
        public int Count;

        public void OnFrame(ReadOnlySpan<byte> frame)
        {
            // IPv4 carrying TCP (ethertype 0x0800, protocol 6).
            if (frame.Length >= 34 && frame[12] == 0x08 && frame[13] == 0x00 && frame[23] == 6)
            {
                Count++;
            }
        }
    }
}
