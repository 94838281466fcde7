using Vso.Transport.Tests.Tcp;

namespace Vso.Transport.Tests.Interface;

/// <summary>ARP mappings in use are renewed before they expire, so traffic never waits for a resolution.</summary>
public sealed class ArpRefreshTests
{
    [Fact]
    public void A_connection_that_keeps_talking_past_the_arp_lifetime_never_waits_for_arp()
    {
        using var net = new SimulatedNetwork();
        var (client, server) = net.Connect();
        var message = new byte[100];
        var buffer = new byte[1000];

        // One exchange every 7 s for 5 minutes: five times the 60 s lifetime of an ARP entry.
        // An exchange is two one-way trips (5 ms each); waiting for an expired mapping would add an ARP round trip.
        for (var i = 0; i < 43; i++)
        {
            var start = net.Clock.NowMicroseconds;
            var up = client.SendAsync(message);
            Assert.Equal(message.Length, net.Await(server.ReceiveAsync(buffer).AsTask()));
            var down = server.SendAsync(message);
            Assert.Equal(message.Length, net.Await(client.ReceiveAsync(buffer).AsTask()));
            Assert.True(net.Clock.NowMicroseconds - start <= 12_000, $"exchange {i} took {(net.Clock.NowMicroseconds - start) / 1000.0} ms");
            net.Await(up);
            net.Await(down);
            net.Driver.Run(TimeSpan.FromSeconds(7));
        }

        var info = client.GetInfo();
        Assert.Equal(0, info.RetransmittedSegments);
        Assert.Equal(0, info.Timeouts);
        Assert.Equal(0, server.GetInfo().RetransmittedSegments);
    }
}
