using System.Security.Cryptography;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

using Vso.Transport.Tests.Tcp;

namespace Vso.Transport.Tests.Robustness;

/// <summary>
/// Pinned, locked and leased bytes go back to exactly zero once every connection has ended, however it ended:
/// closed in order, aborted, reset by the peer, or failed on timeout, in both identify modes.
/// </summary>
public sealed class PinCountersTests
{
    private const int Size = 512 * 1024;

    [Fact]
    public void Counters_return_to_zero_after_clean_aborted_reset_and_timed_out_connections()
    {
        var mlock = MlockSupport.Allowed();
        using var net = new RobustNet(o =>
        {
            o.Mlock = mlock;
            o.Tcp.MaxRetransmissions = 4;
            o.Tcp.TimeWait = TimeSpan.FromSeconds(5);
        });
        using var listener = net.Server.Listen(80);
        var runs = new List<Run>();

        // Phase 1, all at once: two clean transfers, one aborted by the sender, one reset by the receiver.
        var clean1 = Start(net, listener, IdentifyMode.Pinned, 1);
        var clean2 = Start(net, listener, IdentifyMode.Copy, 2);
        var aborted = Start(net, listener, IdentifyMode.Pinned, 3);
        var reset = Start(net, listener, IdentifyMode.Copy, 4);
        runs.AddRange([clean1, clean2, aborted, reset]);

        Assert.True(net.Run(() => aborted.ServerProgress.Value >= Size / 4 && reset.ServerProgress.Value >= Size / 4, TimeSpan.FromMinutes(1)));
        Assert.True(net.Client.PinnedBytes > 0);
        aborted.Client.Abort();
        reset.Server.Abort();

        Assert.True(net.Run(() => runs.TrueForAll(r => r.Finished), TimeSpan.FromMinutes(5)), Describe(runs));
        Assert.True(clean1.Intact && clean2.Intact, Describe(runs));
        Assert.True(aborted.ClientSend.IsFaulted && reset.ClientSend.IsFaulted && reset.ServerSend.IsFaulted, Describe(runs));
        Assert.Equal(TcpError.Aborted, Error(aborted.ClientSend));
        Assert.Equal(TcpError.Reset, Error(reset.ClientSend));

        // Phase 2: the wire goes dark mid-transfer; both sides give up after their retransmissions.
        var dark1 = Start(net, listener, IdentifyMode.Pinned, 5);
        var dark2 = Start(net, listener, IdentifyMode.Copy, 6);
        runs.AddRange([dark1, dark2]);
        Assert.True(net.Run(() => dark1.ServerProgress.Value >= Size / 4 && dark2.ServerProgress.Value >= Size / 4, TimeSpan.FromMinutes(1)));
        net.ClientProbe.Down = true;
        net.ServerProbe.Down = true;
        Assert.True(net.Run(() => runs.TrueForAll(r => r.Finished), TimeSpan.FromMinutes(30)), Describe(runs));
        Assert.Equal(TcpError.TimedOut, Error(dark1.ClientSend));
        Assert.Equal(TcpError.TimedOut, Error(dark2.ServerSend));

        // Every connection has ended for the application, and TIME-WAIT has passed.
        net.ClientProbe.Down = false;
        net.ServerProbe.Down = false;
        foreach (var r in runs)
        {
            r.Client.CloseAsync();
            r.Server.CloseAsync();
        }

        Assert.True(net.Run(() => runs.TrueForAll(r => r.Client.Closed.IsCompleted && r.Server.Closed.IsCompleted), TimeSpan.FromMinutes(5)), Describe(runs));
        net.Driver.Run(TimeSpan.FromSeconds(30));
        Assert.Equal(0, net.Client.ConnectionCount);
        Assert.Equal(0, net.Server.ConnectionCount);

        foreach (var stack in new[] { net.Client, net.Server })
        {
            Assert.Equal(0, stack.PinnedBytes);
            Assert.Equal(0, stack.LeasedBytes);
            Assert.Equal(0, stack.LockedBytes);
            Assert.Equal(stack.PinnedBytes, stack.PinningMetrics.PinnedBytes);
            Assert.Equal(stack.LeasedBytes, stack.PinningMetrics.LeasedBytes);
            Assert.Equal(stack.LockedBytes, stack.PinningMetrics.LockedBytes);
            Assert.Equal(0, stack.ContainedExceptions);
        }

        // The counters did move on the way: memory was pinned, leased to frames (Pinned mode), locked if asked.
        Assert.True(net.ClientProbe.MaxPinnedBytes > 0 && net.ServerProbe.MaxPinnedBytes > 0);
        Assert.True(net.ClientProbe.MaxLeasedBytes > 0 && net.ServerProbe.MaxLeasedBytes > 0);
        Assert.Equal(0, net.ClientProbe.LeaseMismatches);
        Assert.Equal(0, net.ServerProbe.LeaseMismatches);
        if (mlock)
        {
            Assert.True(net.ClientProbe.MaxLockedBytes > 0 && net.ServerProbe.MaxLockedBytes > 0);
        }
    }

    [Fact]
    public void A_pinned_block_pool_as_send_buffer_source_returns_to_zero_and_blocks_are_reused_only_after_completion()
    {
        var mlock = MlockSupport.Allowed();
        var poolMetrics = new PinningMetrics();
        var pool = new PinnedBlockPool(new PinnedBlockPoolOptions { BlockSize = 4096, SlabSize = 64 * 1024, MaxBytes = 64 * 1024, Mlock = mlock }, poolMetrics);
        using var net = new RobustNet(o => o.Mlock = mlock);
        using var listener = net.Server.Listen(80);

        var data = SimulatedNetwork.Pattern(2 << 20, 9);
        var results = new List<(Task Send, Task<(long Length, byte[] Hash)> Receive, VsoConnection Client, VsoConnection Server)>();
        foreach (var mode in new[] { IdentifyMode.Pinned, IdentifyMode.Copy })
        {
            var (client, server) = net.Connect(listener);
            client.Tcp!.IdentifyMode = mode;
            server.Tcp!.IdentifyMode = mode;
            results.Add((SendFromPoolAsync(client, pool, data), SimulatedNetwork.ReceiveAllAsync(server), client, server));
        }

        // A third connection is aborted while its blocks are in flight.
        var (abortClient, abortServer) = net.Connect(listener);
        var abortedSend = SendFromPoolAsync(abortClient, pool, data);
        var abortedReceive = SimulatedNetwork.ReceiveAllAsync(abortServer);
        Assert.True(net.Run(() => net.Client.PinnedBytes >= 32 * 1024));
        abortClient.Abort();

        Assert.True(net.Run(() => results.TrueForAll(r => r.Send.IsCompleted && r.Receive.IsCompleted) && abortedSend.IsCompleted && abortedReceive.IsCompleted));
        foreach (var r in results)
        {
            net.Await(r.Send);
            var (length, hash) = net.Await(r.Receive);
            Assert.Equal(data.Length, length);
            Assert.Equal(SHA256.HashData(data), hash);
        }

        Assert.True(abortedSend.IsFaulted);
        Assert.Equal(0, net.Client.PinnedBytes);
        Assert.Equal(0, net.Client.LeasedBytes);
        Assert.Equal(0, net.Client.LockedBytes);
        Assert.Equal(0, poolMetrics.PinnedBytes);
        Assert.Equal(0, poolMetrics.LeasedBytes);
        Assert.Equal(0, pool.RentedBlocks);
        Assert.Equal(mlock ? 64 * 1024 : 0, poolMetrics.LockedBytes);
        pool.Dispose();
        Assert.Equal(0, poolMetrics.LockedBytes);
        Assert.Equal(0, pool.AllocatedBytes);
        Assert.Equal(0, net.ClientProbe.LeaseMismatches);
        Assert.Equal(0, net.Client.ContainedExceptions);
    }

    /// <summary>
    /// Sends through 4 KiB blocks of a pool that holds only 16: each block is disposed the moment its send completes
    /// and rented again for the next chunk at once, so a frame that still read a block after its task completed
    /// would carry the next chunk's bytes and break the receiver's hash.
    /// </summary>
    private static async Task SendFromPoolAsync(VsoConnection connection, PinnedBlockPool pool, byte[] data)
    {
        var inFlight = new Queue<(Task Task, PinnedBlock Block)>();
        try
        {
            for (var offset = 0; offset < data.Length; offset += pool.BlockSize)
            {
                if (inFlight.Count == 5)
                {
                    var (task, block) = inFlight.Dequeue();
                    try
                    {
                        await task.ConfigureAwait(false);
                    }
                    finally
                    {
                        block.Dispose();
                    }
                }

                var next = pool.Rent();
                var n = Math.Min(pool.BlockSize, data.Length - offset);
                data.AsSpan(offset, n).CopyTo(next.GetSpan());
                inFlight.Enqueue((connection.SendAsync(next.Memory[..n]), next));
            }

            while (inFlight.Count > 0)
            {
                var (task, block) = inFlight.Dequeue();
                try
                {
                    await task.ConfigureAwait(false);
                }
                finally
                {
                    block.Dispose();
                }
            }

            connection.ShutdownSend();
        }
        catch
        {
            // Blocks of failed sends go back only once their tasks completed (unpinned, no lease left).
            while (inFlight.Count > 0)
            {
                var (task, block) = inFlight.Dequeue();
                await Task.WhenAny(task).ConfigureAwait(false);
                block.Dispose();
            }

            throw;
        }
    }

    private static TcpError Error(Task task) => Assert.IsType<TcpConnectionException>(task.Exception?.InnerException).Error;

    private static Run Start(RobustNet net, VsoListener listener, IdentifyMode mode, int seed)
    {
        var (client, server) = net.Connect(listener);
        client.Tcp!.IdentifyMode = mode;
        server.Tcp!.IdentifyMode = mode;
        var up = SimulatedNetwork.Pattern(Size, seed * 2);
        var down = SimulatedNetwork.Pattern(Size, (seed * 2) + 1);
        var serverProgress = new StrongBox<long>();
        return new Run(
            client,
            server,
            up,
            down,
            SimulatedNetwork.SendAllAsync(client, up, 64 * 1024),
            SimulatedNetwork.SendAllAsync(server, down, 64 * 1024),
            SimulatedNetwork.ReceiveAllAsync(server, serverProgress),
            SimulatedNetwork.ReceiveAllAsync(client),
            serverProgress);
    }

    private static string Describe(List<Run> runs) => string.Join("; ", runs.Select((r, i) => $"#{i + 1} cs={r.ClientSend.Status} ss={r.ServerSend.Status} sr={r.ServerReceive.Status} cr={r.ClientReceive.Status} {r.Client.GetInfo().State}/{r.Server.GetInfo().State}"));

    private sealed record Run(
        VsoConnection Client,
        VsoConnection Server,
        byte[] Up,
        byte[] Down,
        Task ClientSend,
        Task ServerSend,
        Task<(long Length, byte[] Hash)> ServerReceive,
        Task<(long Length, byte[] Hash)> ClientReceive,
        StrongBox<long> ServerProgress)
    {
        public bool Finished => ClientSend.IsCompleted && ServerSend.IsCompleted && ServerReceive.IsCompleted && ClientReceive.IsCompleted;

        public bool Intact =>
            ServerReceive.IsCompletedSuccessfully && ServerReceive.Result.Hash.AsSpan().SequenceEqual(SHA256.HashData(Up))
            && ClientReceive.IsCompletedSuccessfully && ClientReceive.Result.Hash.AsSpan().SequenceEqual(SHA256.HashData(Down))
            && ClientSend.IsCompletedSuccessfully && ServerSend.IsCompletedSuccessfully;
    }
}
