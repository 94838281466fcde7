using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Recovery;

/// <summary>
/// Random loss each way on a short, fast path — the veth of the interop tests, in virtual time: 50 µs round trip,
/// 2 Gbit/s, the receiver delaying a lone segment's ACK by 40 ms as Linux does, Nagle off as in the interop rig.
/// On such a path the windows after each loss are two or three segments, and every retransmission timeout (200 ms,
/// four thousand round trips) dominates the transfer time, so the test bounds the timeouts.
/// </summary>
public sealed class ShortPathLossTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(0.01, 0)]
    [InlineData(0.05, 2)]
    public void Random_loss_each_way_costs_few_timeouts(double loss, int maxTimeouts)
    {
        var link = new FaultOptions { RateBitsPerSecond = 2_000_000_000, QueueLimitBytes = 1 << 20, LossRate = loss, Seed = 77 };
        var result = RecoveryTransfer.OneWay(link, link with { Seed = 78 }, 16 << 20, tcp => tcp.Nagle = false, TimeSpan.FromMicroseconds(25));
        var s = result.Sender;
        output.WriteLine($"loss {loss:P0} each way: {result.GoodputMbps / 8:F1} MB/s in virtual time; retransmitted {s.RetransmittedSegments}, timeouts {s.Timeouts}, " +
            $"fast recoveries {s.FastRetransmits}, tail loss probes {s.TailLossProbes}, RACK losses {s.RackLosses}, undos {s.Undos}");
        Assert.True(result.Intact, result.Describe());
        Assert.True(s.Timeouts <= maxTimeouts, $"{s.Timeouts} timeouts (at most {maxTimeouts}): {result.Describe()}");
    }
}
