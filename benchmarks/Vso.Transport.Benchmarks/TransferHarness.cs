using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// Two stacks over a SimulatedLink in virtual time with one established connection. The client sends,
/// the server keeps one receive pending (1 MiB buffer) and discards what it reads. <see cref="Transfer"/>
/// sends one chunk and drives both stacks until the chunk is acknowledged: the real stack path, from
/// SendAsync through segment build, link, parse, checksum, reassembly, ACK and release.
/// </summary>
internal sealed class TransferHarness : IDisposable
{
    public static readonly Ipv4Address ClientAddress = Ipv4Address.Parse("198.18.0.1");
    public static readonly Ipv4Address ServerAddress = Ipv4Address.Parse("198.18.0.2");

    private readonly byte[] _payload;
    private readonly byte[] _sink = new byte[1 << 20];
    private bool _draining = true;

    public TransferHarness(IdentifyMode mode, int chunkBytes, int ackEverySegments = 2, int receiverFramesPerTurn = 0, TimeSpan? delay = null, bool drain = true)
    {
        SynchronizationContext.SetSynchronizationContext(null);
        Clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreatePair(Clock, new SimulatedLinkOptions { PropagationDelay = delay ?? TimeSpan.FromMicroseconds(50) });
        ClientWire = a;
        ServerWire = b;
        Client = new VsoStack(a, Options(ClientAddress, mode, ackEverySegments), Clock);
        ILink serverLink = receiverFramesPerTurn > 0 ? new TurnLimitedLink(b, receiverFramesPerTurn) : b;
        Server = new VsoStack(serverLink, Options(ServerAddress, mode, ackEverySegments), Clock);
        Driver = new VirtualTimeDriver(Clock, Client, Server);

        using (var listener = Server.Listen(80))
        {
            var accepted = listener.AcceptAsync().AsTask();
            var connected = Client.ConnectAsync(ServerAddress, 80);
            Require(Driver.RunUntil(() => connected.IsCompleted && accepted.IsCompleted, TimeSpan.FromSeconds(10)), "handshake");
            ClientConnection = connected.Result;
            ServerConnection = accepted.Result;
        }

        if (drain)
        {
            _ = DrainAsync();
        }
        _payload = new byte[chunkBytes];
        new Random(7).NextBytes(_payload);
    }

    public VirtualClock Clock { get; }

    public SimulatedLink ClientWire { get; }

    public SimulatedLink ServerWire { get; }

    public VsoStack Client { get; }

    public VsoStack Server { get; }

    public VirtualTimeDriver Driver { get; }

    public VsoConnection ClientConnection { get; }

    public VsoConnection ServerConnection { get; }

    /// <summary>Full-sized data segments one chunk takes.</summary>
    public int SegmentsPerChunk => (_payload.Length + ClientConnection.GetInfo().MaxSegmentSize - 1) / ClientConnection.GetInfo().MaxSegmentSize;

    /// <summary>Sends one chunk and runs until every byte of it is acknowledged (and so released).</summary>
    public void Transfer()
    {
        var sent = ClientConnection.SendAsync(_payload);
        if (!Driver.RunUntil(() => sent.IsCompleted, TimeSpan.FromSeconds(60)) || !sent.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException($"The chunk was not acknowledged: {sent.Status}, {ClientConnection.GetInfo()}");
        }
    }

    /// <summary>
    /// <see cref="Transfer"/> with the driver's loop written out, counting the bytes allocated by the
    /// SendAsync call, by the client's polls (sender: segments out, ACKs in) and by the server's polls
    /// (receiver: segments in, ACKs out, the application's receive completions).
    /// </summary>
    public (long Send, long ClientPolls, long ServerPolls) TransferCountingAllocations()
    {
        long send, clientPolls = 0, serverPolls = 0;
        var start = GC.GetAllocatedBytesForCurrentThread();
        var sent = ClientConnection.SendAsync(_payload);
        send = GC.GetAllocatedBytesForCurrentThread() - start;
        while (!sent.IsCompleted)
        {
            bool progress;
            do
            {
                var t0 = GC.GetAllocatedBytesForCurrentThread();
                progress = Client.Core.Poll();
                var t1 = GC.GetAllocatedBytesForCurrentThread();
                progress |= Server.Core.Poll();
                var t2 = GC.GetAllocatedBytesForCurrentThread();
                clientPolls += t1 - t0;
                serverPolls += t2 - t1;
            }
            while (progress);

            if (sent.IsCompleted)
            {
                break;
            }

            var next = Math.Min(Client.Core.NextEventMicroseconds, Server.Core.NextEventMicroseconds);
            if (next == long.MaxValue)
            {
                throw new InvalidOperationException("Nothing left to happen but the chunk is not acknowledged.");
            }

            Clock.AdvanceTo(Math.Max(next, Clock.NowMicroseconds + 1));
        }

        return (send, clientPolls, serverPolls);
    }

    /// <summary>Transfers until the congestion window stops mattering (slow start over, tiered JIT done).</summary>
    public void WarmUp(int chunks = 200)
    {
        for (var i = 0; i < chunks; i++)
        {
            Transfer();
        }
    }

    private async Task DrainAsync()
    {
        while (_draining)
        {
            var n = await ServerConnection.ReceiveAsync(_sink).ConfigureAwait(false);
            if (n == 0)
            {
                return;
            }
        }
    }

    private static VsoStackOptions Options(Ipv4Address address, IdentifyMode mode, int ackEverySegments) => new()
    {
        Address = address,
        PrefixLength = 24,
        InlineContinuations = true,
        Tcp = new TcpSettings { IdentifyMode = mode, IsnKey = [1, 2, 3, 4], DelayedAckSegments = ackEverySegments },
    };

    private static void Require(bool condition, string what)
    {
        if (!condition)
        {
            throw new InvalidOperationException($"Benchmark setup failed: {what}.");
        }
    }

    public void Dispose()
    {
        _draining = false;
        Client.Dispose();
        Server.Dispose();
    }
}
