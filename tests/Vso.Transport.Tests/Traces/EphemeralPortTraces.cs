using Vso.Transport.Tcp;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>RFC 6056 §3.3.4 (Algorithm 4) in the active open: ports an off-path attacker cannot guess, within the range.</summary>
public sealed class EphemeralPortTraces
{
    [Fact]
    public void Active_opens_to_different_peers_use_ports_that_are_not_sequential_and_stay_in_range()
    {
        using var peer = new RawPeer();
        var ports = new List<int>();
        for (ushort remotePort = 7000; remotePort < 7032; remotePort++)
        {
            _ = peer.Stack.ConnectAsync(RawPeer.PeerAddress, remotePort);
            var syn = peer.Expect(Syn, within: TimeSpan.Zero);
            Assert.Equal(remotePort, syn.DestinationPort);
            ports.Add(syn.SourcePort);
        }

        Assert.All(ports, p => Assert.InRange(p, 49152, 65535));
        Assert.Equal(ports.Count, ports.Distinct().Count());

        // Sequential allocation (the old behaviour) would give 49152, 49153, ...: RFC 6056 §3.1 spreads them.
        var steps = ports.Zip(ports.Skip(1), (a, b) => b - a).ToList();
        Assert.True(steps.Count(d => d == 1) < steps.Count / 2, $"ports look sequential: {string.Join(", ", ports)}");
        Assert.True(ports.Max() - ports.Min() > 1000, $"ports are not spread: {string.Join(", ", ports)}");
    }

    [Fact]
    public void A_reconnect_to_the_same_peer_gets_a_fresh_port()
    {
        using var peer = new RawPeer();
        _ = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var first = peer.Expect(Syn, within: TimeSpan.Zero);
        _ = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var second = peer.Expect(Syn, within: TimeSpan.Zero);
        Assert.NotEqual(first.SourcePort, second.SourcePort);
    }

    [Fact]
    public void The_configured_range_is_honoured_and_a_full_range_fails_with_a_clear_error()
    {
        using var peer = new RawPeer(s => { s.EphemeralPortFirst = 50000; s.EphemeralPortLast = 50001; });
        _ = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        _ = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        var a = peer.Expect(Syn, within: TimeSpan.Zero).SourcePort;
        var b = peer.Expect(Syn, within: TimeSpan.Zero).SourcePort;
        Assert.Equal([50000, 50001], new[] { (int)a, b }.Order());

        var third = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        peer.Pump();
        Assert.True(third.IsFaulted);
        var error = Assert.IsType<InvalidOperationException>(third.Exception!.InnerException);
        Assert.Contains("No ephemeral port left", error.Message, StringComparison.Ordinal);
        Assert.Contains("50000-50001", error.Message, StringComparison.Ordinal);

        // Another peer port is another 4-tuple: the same local ports serve it.
        _ = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7001);
        Assert.InRange(peer.Expect(Syn, within: TimeSpan.Zero).SourcePort, 50000, 50001);
    }

    [Fact]
    public void A_port_with_a_listener_is_never_chosen()
    {
        using var peer = new RawPeer(s => { s.EphemeralPortFirst = 50000; s.EphemeralPortLast = 50001; });
        using var listener = peer.Stack.Listen(50000);
        _ = peer.Stack.ConnectAsync(RawPeer.PeerAddress, 7000);
        Assert.Equal(50001, peer.Expect(Syn, within: TimeSpan.Zero).SourcePort);
    }
}
