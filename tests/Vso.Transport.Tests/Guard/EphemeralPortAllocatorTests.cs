using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Guard;

/// <summary>RFC 6056 §3.3.4 (Algorithm 4, double-hash) ephemeral port selection.</summary>
public sealed class EphemeralPortAllocatorTests
{
    private static readonly byte[] Key = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    private static readonly Ipv4Address Local = Ipv4Address.Parse("198.18.0.2");
    private static readonly Ipv4Address Remote = Ipv4Address.Parse("198.18.0.1");

    [Fact]
    public void Ports_stay_in_the_configured_range()
    {
        var allocator = new EphemeralPortAllocator(Key, 50000, 50099);
        var used = new UsedTuples();
        for (ushort remotePort = 1; remotePort <= 300; remotePort++)
        {
            Assert.True(allocator.TryAllocate(Local, Remote, remotePort, used, out var port));
            Assert.InRange(port, (ushort)50000, (ushort)50099);
        }

        var defaults = new EphemeralPortAllocator(Key);
        Assert.Equal(49152, defaults.FirstPort);
        Assert.Equal(65535, defaults.LastPort);
        for (ushort remotePort = 1; remotePort <= 300; remotePort++)
        {
            Assert.True(defaults.TryAllocate(Local, Remote, remotePort, used, out var port));
            Assert.InRange(port, (ushort)49152, (ushort)65535);
        }
    }

    [Fact]
    public void Different_peers_get_unrelated_ports()
    {
        var allocator = new EphemeralPortAllocator(Key);
        var used = new UsedTuples();
        var ports = new List<int>();
        for (ushort remotePort = 1000; remotePort < 1050; remotePort++)
        {
            Assert.True(allocator.TryAllocate(Local, Remote, remotePort, used, out var port));
            ports.Add(port);
        }

        var neighbours = 0;
        for (var i = 1; i < ports.Count; i++)
        {
            neighbours += Math.Abs(ports[i] - ports[i - 1]) <= 1 ? 1 : 0;
        }

        Assert.True(neighbours <= 1, $"{neighbours} consecutive allocations were neighbours: {string.Join(",", ports)}");
        Assert.True(ports.Distinct().Count() >= 48);
    }

    [Fact]
    public void The_same_peer_walks_the_range_one_port_at_a_time()
    {
        // Algorithm 4's counter: a reconnect to the same peer moves on, away from its own TIME-WAIT.
        var allocator = new EphemeralPortAllocator(Key);
        var used = new UsedTuples();
        Assert.True(allocator.TryAllocate(Local, Remote, 443, used, out var first));
        Assert.True(allocator.TryAllocate(Local, Remote, 443, used, out var second));
        Assert.Equal(first == 65535 ? 49152 : first + 1, second);
    }

    [Fact]
    public void Ports_in_use_are_skipped_until_the_range_is_exhausted()
    {
        var allocator = new EphemeralPortAllocator(Key, 40000, 40009);
        var used = new UsedTuples();
        var seen = new HashSet<ushort>();
        for (var i = 0; i < 10; i++)
        {
            Assert.True(allocator.TryAllocate(Local, Remote, 80, used, out var port));
            Assert.True(seen.Add(port), $"port {port} given twice");
            used.Add(new ConnectionId(Local, port, Remote, 80));
        }

        // The counter walks on past each port it gave, so each allocation found a free port at once.
        Assert.Equal(10, used.Probes);
        Assert.False(allocator.TryAllocate(Local, Remote, 80, used, out var none));
        Assert.Equal(0, none);
        Assert.Equal(20, used.Probes);

        // Freeing one port makes exactly that one available again.
        used.Remove(new ConnectionId(Local, 40004, Remote, 80));
        Assert.True(allocator.TryAllocate(Local, Remote, 80, used, out var again));
        Assert.Equal(40004, again);

        // The same ports remain free towards another peer: the probe sees whole tuples.
        Assert.True(allocator.TryAllocate(Local, Remote, 81, used, out _));
    }

    [Fact]
    public void A_full_range_fails_after_trying_each_port_once()
    {
        var allocator = new EphemeralPortAllocator(Key, 40000, 40099);
        var everything = new EverythingInUse();
        Assert.False(allocator.TryAllocate(Local, Remote, 80, everything, out _));
        Assert.Equal(100, everything.Probes);
    }

    [Fact]
    public void An_injected_key_gives_a_reproducible_sequence()
    {
        var a = Sequence(new EphemeralPortAllocator(Key));
        var b = Sequence(new EphemeralPortAllocator(Key));
        var other = Sequence(new EphemeralPortAllocator([.. Key.Select(x => (byte)(x + 1))]));
        Assert.Equal(a, b);
        Assert.NotEqual(a, other);

        static List<ushort> Sequence(EphemeralPortAllocator allocator)
        {
            var used = new UsedTuples();
            var ports = new List<ushort>();
            for (ushort remotePort = 1; remotePort <= 20; remotePort++)
            {
                allocator.TryAllocate(Local, Remote, remotePort, used, out var port);
                ports.Add(port);
            }

            return ports;
        }
    }

    [Fact]
    public void Bad_ranges_and_keys_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new EphemeralPortAllocator(Key, 0, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EphemeralPortAllocator(Key, 20, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EphemeralPortAllocator(Key, tableLength: 0));
        Assert.Throws<ArgumentException>(() => new EphemeralPortAllocator(new byte[8]));
        var single = new EphemeralPortAllocator([], 5000, 5000);
        Assert.True(single.TryAllocate(Local, Remote, 80, new UsedTuples(), out var port));
        Assert.Equal(5000, port);
    }

    private sealed class UsedTuples : IPortInUseProbe
    {
        private readonly HashSet<ConnectionId> _used = [];

        public int Probes { get; private set; }

        public void Add(ConnectionId id) => _used.Add(id);

        public void Remove(ConnectionId id) => _used.Remove(id);

        public bool IsInUse(in ConnectionId candidate)
        {
            Probes++;
            return _used.Contains(candidate);
        }
    }

    private sealed class EverythingInUse : IPortInUseProbe
    {
        public int Probes { get; private set; }

        public bool IsInUse(in ConnectionId candidate)
        {
            Probes++;
            return true;
        }
    }
}
