using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Memory;

/// <summary>
/// An idle connection costs a few KiB, not its receive buffer: receive memory is taken in pooled blocks only where
/// bytes land (<see cref="ReceiveBuffer"/>), and the big per-connection tables are made on first use. 1,000 idle
/// connections between two stacks in virtual time; the managed bytes allocated on this (the only) thread from the
/// first SYN to the last accept count both ends (two TcpConnections, the API's VsoConnection and its tasks).
/// </summary>
public sealed class IdleConnectionMemoryTests(ITestOutputHelper output)
{
    /// <summary>
    /// Measured at about 5.6 KiB for both ends together (each end's TcpConnection with its sender, receiver, scoreboard,
    /// send queue and statistics, the API objects and the tables' amortized growth); the bound leaves headroom, and is a
    /// hundredth of the 1 MiB receive buffer each end used to allocate up front.
    /// </summary>
    private const int PerConnectionBudget = 8 * 1024;

    [Fact]
    public void A_thousand_idle_connections_allocate_a_few_KiB_each_and_hold_no_receive_memory()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        var clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMicroseconds(50) });
        using var client = new VsoStack(a, Options("198.18.0.1"), clock);
        using var server = new VsoStack(b, Options("198.18.0.2"), clock);
        var driver = new VirtualTimeDriver(clock, client, server);
        using var listener = server.Listen(80, backlog: 4096);
        var connections = new List<VsoConnection>();

        void Open(int count)
        {
            var pending = new Task<VsoConnection>[count];
            for (var i = 0; i < count; i++)
            {
                pending[i] = client.ConnectAsync(Ipv4Address.Parse("198.18.0.2"), 80);
            }

            Assert.True(driver.RunUntil(() => Array.TrueForAll(pending, p => p.IsCompleted), TimeSpan.FromSeconds(30)), "handshakes did not complete");
            for (var i = 0; i < count; i++)
            {
                connections.Add(pending[i].GetAwaiter().GetResult());
                Assert.True(listener.TryAccept(out var accepted));
                connections.Add(accepted);
            }
        }

        // Warm up: JIT, ARP, the tables' first growth.
        Open(100);

        const int Count = 1000;
        var before = GC.GetAllocatedBytesForCurrentThread();
        Open(Count);
        var perConnection = (GC.GetAllocatedBytesForCurrentThread() - before) / Count;
        output.WriteLine($"{perConnection} B allocated per idle connection (both ends)");

        Assert.Equal(1100, server.ConnectionCount);
        Assert.True(perConnection < PerConnectionBudget, $"{perConnection} B per idle connection, over {PerConnectionBudget} B");
        Assert.Equal(0, server.Core.Tcp.Memory.HeldBytes);
        Assert.Equal(0, client.Core.Tcp.Memory.HeldBytes);
        GC.KeepAlive(connections);
    }

    private static VsoStackOptions Options(string address) => new()
    {
        Address = Ipv4Address.Parse(address),
        PrefixLength = 24,
        InlineContinuations = true,
        Tcp = new TcpSettings { IsnKey = [1, 2, 3, 4] },
    };
}
