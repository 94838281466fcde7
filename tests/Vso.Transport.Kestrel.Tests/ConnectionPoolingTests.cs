using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// Issue 12 item 4: a listener's connections reuse the per-connection state (operations, input pump and pipe, writer,
/// send host) that ended connections left, in a bounded pool; a reused state carries nothing of the previous connection,
/// and what the previous connection's application may still hold (its Transport, its context) reaches nothing new.
/// </summary>
public sealed class ConnectionPoolingTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly IPEndPoint Endpoint = new(IPAddress.Parse(SimulatedPair.ServerAddress), 8080);

    [Fact]
    public void A_reused_state_sees_nothing_of_the_previous_connection_and_stale_references_are_inert()
    {
        VirtualPair.Run(
            async pair =>
            {
                var listener = (VsoConnectionListener)await pair.Factory.BindAsync(Endpoint);

                // The first connection: its request is left unread in the pipe, its response is sent, it ends in order.
                var (client1, server1) = await ConnectAsync(pair, listener);
                await client1.SendAsync("first request"u8.ToArray());
                var read = await server1.Transport.Input.ReadAsync();
                server1.Transport.Input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
                var staleInput = server1.Transport.Input;
                var staleOutput = server1.Transport.Output;
                staleOutput.Write("one"u8);
                await staleOutput.FlushAsync();
                await server1.DisposeAsync();
                Assert.Equal("one", await ReadToEndAsync(client1));
                Assert.Equal(0, listener.States.Count);
                await client1.CloseAsync().WaitAsync(Timeout);
                await pair.Until(() => listener.States.Count == 1, "the first connection's state back in the pool");

                // The second connection takes the same state and sees only its own bytes.
                var (client2, server2) = await ConnectAsync(pair, listener);
                Assert.Same(((VsoTransportConnection)server1).State, ((VsoTransportConnection)server2).State);
                Assert.Equal(1, listener.States.Created);
                await client2.SendAsync("BB"u8.ToArray());
                Assert.Equal("BB", await ReadAsync(server2.Transport.Input, 2));

                // What the first connection's application still holds reaches nothing of the second.
                Assert.Throws<ObjectDisposedException>(() => staleInput.TryRead(out _));
                await Assert.ThrowsAsync<ObjectDisposedException>(async () => await staleInput.ReadAsync());
                Assert.Throws<ObjectDisposedException>(() => staleOutput.GetSpan(1));
                staleInput.Complete();
                staleOutput.Complete(new InvalidOperationException("stale"));
                server1.Abort(new ConnectionAbortedException("stale abort"));
                Assert.Equal(TcpState.Closed, ((VsoTransportConnection)server1).GetInfo().State);
                Assert.Equal(client1.LocalEndPoint, server1.RemoteEndPoint);
                Assert.Equal(client2.LocalEndPoint, server2.RemoteEndPoint);

                server2.Transport.Output.Write("two"u8);
                var flush = await server2.Transport.Output.FlushAsync();
                Assert.False(flush.IsCompleted, "a stale abort closed the new connection's writer");
                await client2.SendAsync("CC"u8.ToArray());
                Assert.Equal("CC", await ReadAsync(server2.Transport.Input, 2));
                Assert.Equal(TcpState.Established, ((VsoTransportConnection)server2).GetInfo().State);
                Assert.False(server2.ConnectionClosed.IsCancellationRequested);
                await server2.Transport.Output.CompleteAsync();
                Assert.Equal("two", await ReadToEndAsync(client2));

                await server2.DisposeAsync();
                await client2.CloseAsync().WaitAsync(Timeout);
                await pair.Until(() => listener.States.Count == 1, "the second connection's state back in the pool");
                await listener.UnbindAsync();
                await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            });
    }

    /// <summary>
    /// A set back from a connection that streamed, read, flushed and waited equals a set built new, field by field through
    /// the operations, pump, writer and host (by reflection, so a field added later and not reset fails it); only the
    /// generation, the pipe's and queues' kept capacity and the completions' versions differ.
    /// </summary>
    [Fact]
    public void A_returned_state_equals_a_new_one_field_by_field()
    {
        VirtualPair.Run(
            async pair =>
            {
                var listener = (VsoConnectionListener)await pair.Factory.BindAsync(Endpoint);
                var (client, server) = await ConnectAsync(pair, listener);
                await client.SendAsync(new byte[100_000]);
                Assert.Equal(100_000, (await ReadAsync(server.Transport.Input, 100_000)).Length);
                for (var i = 0; i < 8; i++)
                {
                    server.Transport.Output.Write(new byte[60_000]);
                    await server.Transport.Output.FlushAsync();
                }

                await server.DisposeAsync();
                Assert.Equal(480_000, (await ReadToEndAsync(client)).Length);
                await client.CloseAsync().WaitAsync(Timeout);
                await pair.Until(() => listener.States.Count == 1, "the state back in the pool");

                var returned = listener.States.Rent();
                var fresh = listener.States.Rent();
                Assert.Equal(2, listener.States.Created);
                var differences = new List<string>();
                Compare(returned, fresh, "state", differences, new HashSet<object>(ReferenceEqualityComparer.Instance));
                Assert.True(differences.Count == 0, "returned != new: " + string.Join("; ", differences));
                await listener.UnbindAsync();
            });
    }

    private static void Compare(object returned, object fresh, string path, List<string> differences, HashSet<object> seen)
    {
        if (!seen.Add(returned))
        {
            return;
        }

        for (var type = returned.GetType(); type is not null && type != typeof(object) && type.Namespace == typeof(ConnectionOperations).Namespace; type = type.BaseType)
        {
            foreach (var field in type.GetFields(System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.DeclaredOnly))
            {
                var fieldType = field.FieldType;
                if (field.Name.Contains("generation", StringComparison.OrdinalIgnoreCase) || fieldType.Name.StartsWith("ManualResetValueTaskSourceCore", StringComparison.Ordinal))
                {
                    continue;
                }

                var a = field.GetValue(returned);
                var b = field.GetValue(fresh);
                var where = path + "." + field.Name;
                if (a is null || b is null)
                {
                    if (a is not null || b is not null)
                    {
                        differences.Add($"{where}: {a ?? "null"} against {b ?? "null"}");
                    }

                    continue;
                }

                if (fieldType.IsValueType || a is string)
                {
                    if (!a.Equals(b))
                    {
                        differences.Add($"{where}: {a} against {b}");
                    }
                }
                else if (a.GetType().Namespace == typeof(ConnectionOperations).Namespace && a is not ConnectionStatePool and not PinnedBlockClasses)
                {
                    Compare(a, b, where, differences, seen);
                }
                else if (a is System.Collections.ICollection collection && collection.Count != ((System.Collections.ICollection)b).Count)
                {
                    differences.Add($"{where}: {collection.Count} items against {((System.Collections.ICollection)b).Count}");
                }

                // Other objects (the pipe, locks, the shared pool and block classes) keep capacity or are shared.
            }
        }
    }

    /// <summary>Disposed by the application while the peer has not closed yet: the state stays with the connection until TCP ends.</summary>
    [Fact]
    public void The_state_returns_only_once_both_the_application_and_the_TCP_connection_are_done()
    {
        VirtualPair.Run(
            async pair =>
            {
                var listener = (VsoConnectionListener)await pair.Factory.BindAsync(Endpoint);
                var (client, server) = await ConnectAsync(pair, listener);

                // TCP ended first (the peer reset it): the application still holds the connection, so the state stays.
                client.Abort();
                await ((VsoTransportConnection)server).Ended.WaitAsync(Timeout);
                await pair.Delay(TimeSpan.FromSeconds(1));
                Assert.Equal(0, listener.States.Count);
                await server.DisposeAsync();
                await pair.Until(() => listener.States.Count == 1, "the state back once the application disposed");

                // The application first: the peer keeps its side open (FIN-WAIT-2 here), the state waits for TCP's end.
                var (client2, server2) = await ConnectAsync(pair, listener);
                await server2.DisposeAsync();
                Assert.Equal(0, await client2.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                await pair.Delay(TimeSpan.FromSeconds(1));
                Assert.Equal(0, listener.States.Count);
                await client2.CloseAsync().WaitAsync(Timeout);
                await pair.Until(() => listener.States.Count == 1, "the state back once TCP ended");
                Assert.Equal(1, listener.States.Created);
                await listener.UnbindAsync();
            });
    }

    [Fact]
    public void The_pool_keeps_at_most_its_capacity()
    {
        using var pool = new PinnedBlockPool();
        using var blocks = new PinnedBlockClasses(pool);
        var states = new ConnectionStatePool(blocks, SimulatedPair.DefaultOptions());
        var rented = new List<ConnectionOperations>();
        for (var i = 0; i < ConnectionStatePool.Capacity + 10; i++)
        {
            rented.Add(states.Rent());
        }

        Assert.Equal(ConnectionStatePool.Capacity + 10, states.Created);
        foreach (var state in rented)
        {
            states.Return(state);
        }

        Assert.Equal(ConnectionStatePool.Capacity, states.Count);
        Assert.Same(rented[ConnectionStatePool.Capacity - 1], states.Rent());
    }

    /// <summary>The connection is its own feature collection: built-in features, features set by others, overrides and removal.</summary>
    [Fact]
    public void Features_set_by_others_are_kept_and_override_the_built_in_ones()
    {
        VirtualPair.Run(
            async pair =>
            {
                var listener = (VsoConnectionListener)await pair.Factory.BindAsync(Endpoint);
                var (_, server) = await ConnectAsync(pair, listener);
                var features = server.Features;
                var revision = features.Revision;

                Assert.Same(server, features.Get<IConnectionIdFeature>());
                Assert.Null(features.Get<IProxyProtocolFeature>());
                Assert.Null(features[typeof(string)]);
                features.Set<string>("extra");
                Assert.Equal("extra", features.Get<string>());
                Assert.NotEqual(revision, features.Revision);

                var items = new ItemsFeature();
                features.Set<IConnectionItemsFeature>(items);
                Assert.Same(items, features.Get<IConnectionItemsFeature>());
                features.Set<IConnectionItemsFeature>(null);
                Assert.Null(features.Get<IConnectionItemsFeature>());
                features.Set<string>(null);

                var listed = features.Select(f => f.Key).ToList();
                Assert.Contains(typeof(IConnectionTransportFeature), listed);
                Assert.Contains(typeof(IVsoTcpInfoFeature), listed);
                Assert.DoesNotContain(typeof(IConnectionItemsFeature), listed);
                Assert.DoesNotContain(typeof(string), listed);
                Assert.Equal(listed.Count, listed.Distinct().Count());
                await server.DisposeAsync();
                await listener.UnbindAsync();
            });
    }

    /// <summary>DisposeAsync's wait for the peer's acknowledgments without a timer or promise per connection: true once acknowledged, false at the deadline.</summary>
    [Fact]
    public async Task The_drain_wait_ends_on_the_acknowledgment_or_at_its_deadline()
    {
        using var pool = new PinnedBlockPool();
        var (link, peer) = Links.SimulatedLink.CreatePair(new Engine.VirtualClock(), new Links.SimulatedLinkOptions());
        using var stack = new VsoStack(link, new VsoStackOptions { Address = IPAddress.Parse(SimulatedPair.ClientAddress), PrefixLength = 24 }, new Engine.VirtualClock());
        var operations = new ConnectionOperations(stack.CreateEndpoint(), "vso-test", finOnError: false, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        using var blocks = new PinnedBlockClasses(pool);
        var writer = new VsoOutputWriter(operations, blocks, pauseThreshold: 1 << 20);

        writer.Write("xx"u8);
        await writer.FlushAsync();
        var acknowledged = writer.WhenDrained(TimeSpan.FromSeconds(30));
        Assert.False(acknowledged.IsCompleted);
        writer.OnReleased(2);
        Assert.True(await acknowledged.AsTask().WaitAsync(Timeout));

        writer.Write("yy"u8);
        await writer.FlushAsync();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        Assert.False(await writer.WhenDrained(TimeSpan.FromMilliseconds(150)).AsTask().WaitAsync(Timeout));
        Assert.True(System.Diagnostics.Stopwatch.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(150));
        writer.OnReleased(2);
        Assert.True(await writer.WhenDrained(TimeSpan.FromSeconds(30)));
        writer.Complete();
        peer.Dispose();
    }

    private sealed class ItemsFeature : IConnectionItemsFeature
    {
        public IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();
    }

    private static async Task<(VsoConnection Client, ConnectionContext Server)> ConnectAsync(VirtualPair pair, VsoConnectionListener listener)
    {
        var accept = listener.AcceptAsync().AsTask();
        var client = await pair.Client.ConnectAsync(Endpoint).WaitAsync(Timeout);
        return (client, (await accept.WaitAsync(Timeout))!);
    }

    private static async Task<string> ReadAsync(PipeReader input, int length)
    {
        while (true)
        {
            var result = await input.ReadAsync();
            if (result.Buffer.Length >= length || result.IsCompleted)
            {
                var text = Encoding.ASCII.GetString(result.Buffer.ToArray());
                input.AdvanceTo(result.Buffer.End);
                return text;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    private static async Task<string> ReadToEndAsync(VsoConnection client)
    {
        var text = new StringBuilder();
        var buffer = new byte[256];
        int n;
        while ((n = await client.ReceiveAsync(buffer).AsTask().WaitAsync(Timeout)) > 0)
        {
            text.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }

        return text.ToString();
    }
}
