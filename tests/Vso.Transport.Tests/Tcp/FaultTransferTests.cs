using System.Security.Cryptography;
using Vso.Transport.Links;
using Vso.Transport.Tcp.Congestion;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Tcp;

/// <summary>
/// The core acceptance: two stacks move 64 MiB each way over a simulated link under each fault,
/// byte for byte (sha256), seeded and repeatable, in virtual time.
/// </summary>
public sealed class FaultTransferTests(ITestOutputHelper output)
{
    public const int TransferSize = 64 << 20;

    public static TheoryData<string, string> Cases
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var name in FaultCases.Names)
            {
                data.Add(name, "newreno");
                data.Add(name, "cubic");
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Sixty_four_MiB_each_way_arrive_intact(string faults, string congestionControl)
    {
        var (clientFaults, serverFaults) = FaultCases.Get(faults);
        var result = Transfer(clientFaults, serverFaults, TransferSize, tcp => tcp.CongestionControl = congestionControl == "cubic"
            ? static () => new CubicCongestionControl()
            : static () => new NewRenoCongestionControl());
        Assert.True(result.Intact, result.Describe());
        output.WriteLine($"{faults}/{congestionControl}: {TransferSize >> 20} MiB each way in {result.VirtualMicroseconds / 1000} ms virtual, " +
            $"goodput {2.0 * TransferSize * 8 / result.VirtualMicroseconds:F1} Mbit/s, retransmissions {result.ClientRetransmissions}+{result.ServerRetransmissions}, timeouts {result.Timeouts}");
    }

    [Fact]
    public void The_same_seed_gives_the_same_run()
    {
        var (c, s) = FaultCases.Get("combined");
        var first = Transfer(c, s, 4 << 20);
        var second = Transfer(c, s, 4 << 20);
        Assert.True(first.Intact && second.Intact);
        Assert.Equal(first.VirtualMicroseconds, second.VirtualMicroseconds);
        Assert.Equal(first.ClientSegmentsSent, second.ClientSegmentsSent);
        Assert.Equal(first.ClientRetransmissions, second.ClientRetransmissions);
    }

    internal static TransferResult Transfer(FaultOptions? clientFaults, FaultOptions? serverFaults, int size, Action<Vso.Transport.Tcp.TcpSettings>? configure = null)
    {
        using var net = new SimulatedNetwork(clientFaults, serverFaults, configure);
        var (client, server) = net.Connect();
        var up = SimulatedNetwork.Pattern(size, 11);
        var down = SimulatedNetwork.Pattern(size, 12);
        var sendUp = SimulatedNetwork.SendAllAsync(client, up, 256 * 1024);
        var sendDown = SimulatedNetwork.SendAllAsync(server, down, 256 * 1024);
        var receiveUp = SimulatedNetwork.ReceiveAllAsync(server);
        var receiveDown = SimulatedNetwork.ReceiveAllAsync(client);
        var start = net.Clock.NowMicroseconds;
        var finished = net.Run(() => receiveUp.IsCompleted && receiveDown.IsCompleted && sendUp.IsCompleted && sendDown.IsCompleted, TimeSpan.FromHours(2));
        var ci = client.GetInfo();
        var si = server.GetInfo();
        var upOk = receiveUp.IsCompletedSuccessfully && receiveUp.Result.Length == size && receiveUp.Result.Hash.AsSpan().SequenceEqual(SHA256.HashData(up));
        var downOk = receiveDown.IsCompletedSuccessfully && receiveDown.Result.Length == size && receiveDown.Result.Hash.AsSpan().SequenceEqual(SHA256.HashData(down));
        return new TransferResult(
            finished && upOk && downOk && sendUp.IsCompletedSuccessfully && sendDown.IsCompletedSuccessfully,
            net.Clock.NowMicroseconds - start,
            ci.SegmentsSent,
            ci.RetransmittedSegments,
            si.RetransmittedSegments,
            ci.Timeouts + si.Timeouts,
            $"finished={finished} up={receiveUp.Status}/{(receiveUp.IsCompletedSuccessfully ? receiveUp.Result.Length : -1)} down={receiveDown.Status}/{(receiveDown.IsCompletedSuccessfully ? receiveDown.Result.Length : -1)} sendUp={sendUp.Status} sendDown={sendDown.Status} {ci} {si}");
    }

    internal sealed record TransferResult(bool Intact, long VirtualMicroseconds, long ClientSegmentsSent, long ClientRetransmissions, long ServerRetransmissions, long Timeouts, string State)
    {
        public string Describe() => $"{State} virtual={VirtualMicroseconds / 1000} ms";
    }
}

/// <summary>The FaultInjector cases of the core acceptance, each applied to both directions with different seeds.</summary>
internal static class FaultCases
{
    public static readonly string[] Names = ["none", "loss-1%", "loss-5%", "bursty", "reorder", "duplicate", "corrupt-1%", "combined"];

    public static (FaultOptions? Client, FaultOptions? Server) Get(string name)
    {
        FaultOptions? f = name switch
        {
            "none" => null,
            "loss-1%" => new FaultOptions { LossRate = 0.01 },
            "loss-5%" => new FaultOptions { LossRate = 0.05 },
            "bursty" => new FaultOptions { GoodToBadProbability = 0.005, BadToGoodProbability = 0.3 },
            "reorder" => new FaultOptions { ReorderRate = 0.05, ReorderDelay = TimeSpan.FromMilliseconds(3) },
            "duplicate" => new FaultOptions { DuplicateRate = 0.05 },
            "corrupt-1%" => new FaultOptions { CorruptRate = 0.01, MaxCorruptBits = 1 },
            "combined" => new FaultOptions
            {
                LossRate = 0.01,
                GoodToBadProbability = 0.002,
                BadToGoodProbability = 0.3,
                ReorderRate = 0.02,
                ReorderDelay = TimeSpan.FromMilliseconds(3),
                DuplicateRate = 0.01,
                CorruptRate = 0.01,
                MaxCorruptBits = 1,
                Jitter = TimeSpan.FromMilliseconds(1),
            },
            _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown fault case"),
        };
        return f is null ? (null, null) : (f with { Seed = 1001 }, f with { Seed = 2002 });
    }
}
