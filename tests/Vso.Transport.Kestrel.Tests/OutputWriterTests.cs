using System.Buffers;
using System.Net;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>The PipeWriter contract of <see cref="VsoOutputWriter"/>: size hints honoured, nothing left on the application's token.</summary>
public sealed class OutputWriterTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly IPEndPoint Endpoint = new(IPAddress.Parse(SimulatedPair.ServerAddress), 8080);

    /// <summary>A PipeWriter returns at least sizeHint bytes: 16 KiB through one GetSpan, over 4 KiB blocks, arrive intact.</summary>
    [Fact]
    public async Task A_size_hint_above_the_block_size_is_honoured()
    {
        using var pair = SimulatedPair.Create();
        var (listener, client, server) = await AcceptOneAsync(pair);

        var data = RandomNumberGenerator.GetBytes(16 * 1024);
        var output = server.Transport.Output;
        var span = output.GetSpan(data.Length);
        Assert.True(span.Length >= data.Length, $"GetSpan({data.Length}) returned {span.Length} bytes");
        data.CopyTo(span);
        output.Advance(data.Length);
        var memory = output.GetMemory(40_000);
        Assert.True(memory.Length >= 40_000, $"GetMemory(40000) returned {memory.Length} bytes");
        await output.FlushAsync();

        Assert.Equal(data, await ReceiveAsync(client, data.Length));
        await server.DisposeAsync();
        await listener.UnbindAsync();
        await SimulatedPair.WaitUntil(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
    }

    /// <summary>
    /// An idle keep-alive connection holds no pinned block: once the peer acknowledged every flushed byte the writer's
    /// block goes back to the pool, and the next response rents one again and arrives intact.
    /// </summary>
    [Fact]
    public async Task Once_everything_flushed_is_acknowledged_the_writer_holds_no_block()
    {
        using var pair = SimulatedPair.Create();
        var (listener, client, server) = await AcceptOneAsync(pair);
        var idle = pair.Factory.PinnedBytes;

        for (var response = 0; response < 2; response++)
        {
            var data = RandomNumberGenerator.GetBytes(1000);
            await server.Transport.Output.WriteAsync(data);
            Assert.Equal(data, await ReceiveAsync(client, data.Length));
            await SimulatedPair.WaitUntil(() => pair.Factory.PinnedBytes == idle, "the writer's block back in the pool once the response is acknowledged");
        }

        await server.DisposeAsync();
        await listener.UnbindAsync();
    }

    /// <summary>
    /// A writer that fills whole blocks gets larger ones, up to one super-segment: a megabyte written as Kestrel writes a
    /// body (GetSpan(4096), fill what it returns) takes a few dozen spans, not 256, and arrives intact. Once the peer
    /// acknowledged everything, the next write starts at the pool's block size again.
    /// </summary>
    [Fact]
    public async Task A_streaming_writer_rents_larger_blocks_and_starts_small_again_when_idle()
    {
        using var pair = SimulatedPair.Create();
        var (listener, client, server) = await AcceptOneAsync(pair);
        var idle = pair.Factory.PinnedBytes;
        var output = server.Transport.Output;
        var blockSize = output.GetSpan(1).Length;

        var data = RandomNumberGenerator.GetBytes(1 << 20);
        var receiving = ReceiveAsync(client, data.Length);
        var spans = 0;
        var largest = 0;
        for (var offset = 0; offset < data.Length;)
        {
            var span = output.GetSpan(4096);
            var n = Math.Min(span.Length, data.Length - offset);
            data.AsSpan(offset, n).CopyTo(span);
            output.Advance(n);
            offset += n;
            spans++;
            largest = Math.Max(largest, span.Length);
            if (output.UnflushedBytes >= 64 * 1024)
            {
                await output.FlushAsync();
            }
        }

        await output.FlushAsync();
        Assert.Equal(data, await receiving.WaitAsync(Timeout));
        Assert.Equal(VsoOutputWriter.MaxStreamingBlockBytes, largest);
        Assert.True(spans < 40, $"{spans} spans for 1 MiB (blocks of {blockSize} bytes would take {data.Length / blockSize})");

        await SimulatedPair.WaitUntil(() => pair.Factory.PinnedBytes == idle, "every block back in the pool once all is acknowledged");
        Assert.Equal(blockSize, output.GetSpan(1).Length);

        await server.DisposeAsync();
        await listener.UnbindAsync();
    }

    private static async Task<(Microsoft.AspNetCore.Connections.IConnectionListener Listener, VsoConnection Client, Microsoft.AspNetCore.Connections.ConnectionContext Server)> AcceptOneAsync(SimulatedPair pair)
    {
        var listener = await pair.Factory.BindAsync(Endpoint);
        var acceptTask = listener.AcceptAsync().AsTask();
        var client = await pair.Client.ConnectAsync(Endpoint).WaitAsync(Timeout);
        var server = (await acceptTask.WaitAsync(Timeout))!;
        return (listener, client, server);
    }

    private static async Task<byte[]> ReceiveAsync(VsoConnection client, int length)
    {
        var received = new byte[length];
        var offset = 0;
        while (offset < received.Length)
        {
            var n = await client.ReceiveAsync(received.AsMemory(offset)).AsTask().WaitAsync(Timeout);
            Assert.NotEqual(0, n);
            offset += n;
        }

        return received;
    }

    /// <summary>
    /// Kestrel passes one token for a connection's lifetime. A flush that had to wait registers on it; once the flush
    /// completed the registration must go, or every waiting flush leaves one (holding the writer) on the token.
    /// </summary>
    [Fact]
    public void A_flush_that_waited_leaves_nothing_on_a_long_lived_token()
    {
        using var lifetime = new CancellationTokenSource();
        using var pool = new PinnedBlockPool();
        var writer = WaitOneFlushAndDrop(pool, lifetime.Token);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(writer.IsAlive, "the completed flush's registration still holds the writer on the token");
        GC.KeepAlive(lifetime);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference WaitOneFlushAndDrop(PinnedBlockPool pool, CancellationToken token)
    {
        var (link, peer) = SimulatedLink.CreatePair(new VirtualClock(), new SimulatedLinkOptions());
        using var stack = new VsoStack(link, new VsoStackOptions { Address = Ipv4Address.Parse(SimulatedPair.ClientAddress), PrefixLength = 24 }, new VirtualClock());
        var operations = new ConnectionOperations(stack.CreateEndpoint(), "vso-test", finOnError: false, NullLogger.Instance);
        using var blocks = new PinnedBlockClasses(pool);
        var writer = new VsoOutputWriter(operations, blocks, pauseThreshold: 2);

        for (var i = 0; i < 3; i++)
        {
            writer.Write("xx"u8);
            var flush = writer.FlushAsync(token);
            Assert.False(flush.IsCompleted, "the flush should wait: two bytes in flight reach the pause threshold");

            // The peer acknowledged it (engine thread): the flush completes.
            writer.OnReleased(2);
            Assert.True(flush.IsCompleted);
            if (flush.IsCompleted)
            {
                Assert.False(flush.Result.IsCanceled);
            }
        }

        writer.Complete();
        peer.Dispose();
        return new WeakReference(writer);
    }

    [Fact]
    public async Task Cancelling_the_token_cancels_only_the_flush_that_waits_on_it()
    {
        using var pool = new PinnedBlockPool();
        var (link, peer) = SimulatedLink.CreatePair(new VirtualClock(), new SimulatedLinkOptions());
        using var stack = new VsoStack(link, new VsoStackOptions { Address = Ipv4Address.Parse(SimulatedPair.ClientAddress), PrefixLength = 24 }, new VirtualClock());
        var operations = new ConnectionOperations(stack.CreateEndpoint(), "vso-test", finOnError: false, NullLogger.Instance);
        using var blocks = new PinnedBlockClasses(pool);
        var writer = new VsoOutputWriter(operations, blocks, pauseThreshold: 2);
        using var cts = new CancellationTokenSource();

        writer.Write("xx"u8);
        var first = writer.FlushAsync(cts.Token);
        writer.OnReleased(2);
        Assert.False((await first).IsCanceled);

        writer.Write("yy"u8);
        var second = writer.FlushAsync(cts.Token);
        Assert.False(second.IsCompleted);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await second);

        writer.Write("zz"u8);
        var third = writer.FlushAsync();
        writer.CancelPendingFlush();
        Assert.True((await third).IsCanceled);
        writer.Complete();
        peer.Dispose();
    }
}
