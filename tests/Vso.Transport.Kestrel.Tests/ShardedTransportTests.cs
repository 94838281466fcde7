using System.Net;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// The transport over a stack of two engines (<c>Vso:Engines</c>): one listener per endpoint takes the connections that
/// every engine accepted, and each works (bytes both ways, TCP info) on the engine that owns it.
/// </summary>
public sealed class ShardedTransportTests
{
    [Fact]
    public async Task One_listener_accepts_from_every_engine_and_each_connection_echoes()
    {
        using var pair = SimulatedPair.CreateSharded(2);
        var listener = await pair.Factory.BindAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080));
        const int count = 20;
        var connects = new Task<VsoConnection>[count];
        for (var i = 0; i < count; i++)
        {
            connects[i] = pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080));
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var accepted = new List<ConnectionContext>();
        for (var i = 0; i < count; i++)
        {
            accepted.Add((await listener.AcceptAsync(timeout.Token))!);
        }

        var clients = await Task.WhenAll(connects);
        var stack = pair.Factory.Stack!;
        Assert.All(stack.Shards, shard => Assert.True(shard.Tcp.ConnectionCount > 0, $"shard {shard.ShardIndex} has no connection"));
        Assert.Equal(count, stack.ConnectionCount);

        // Each server connection answers its client: request in through Transport.Input, answer out through Transport.Output.
        var echoes = accepted.Select(async connection =>
        {
            var read = await connection.Transport.Input.ReadAsync(timeout.Token);
            var text = Encoding.ASCII.GetString(read.Buffer.FirstSpan);
            connection.Transport.Input.AdvanceTo(read.Buffer.End);
            await connection.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes("re:" + text), timeout.Token);
            Assert.Equal(TcpState.Established, connection.Features.Get<IVsoTcpInfoFeature>()!.GetInfo().State);
        }).ToArray();
        for (var i = 0; i < count; i++)
        {
            await clients[i].SendAsync(Encoding.ASCII.GetBytes($"c{i}"));
        }

        await Task.WhenAll(echoes).WaitAsync(timeout.Token);
        for (var i = 0; i < count; i++)
        {
            var buffer = new byte[16];
            var n = await clients[i].ReceiveAsync(buffer).AsTask().WaitAsync(timeout.Token);
            Assert.Equal($"re:c{i}", Encoding.ASCII.GetString(buffer, 0, n));
        }

        foreach (var connection in accepted)
        {
            await connection.DisposeAsync();
        }

        await listener.UnbindAsync();
        await listener.DisposeAsync();
    }
}
