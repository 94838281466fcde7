using System.Globalization;
using System.Text.RegularExpressions;
using Vso.Transport.Links;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// Round-trip time through the AF_PACKET link's receive ring, measured by the kernel's ping from the client namespace.
/// Over a veth the wire adds tens of microseconds; what a ring adds shows directly. TPACKET_V2 hands each frame over
/// at once; TPACKET_V3 holds a block that is not full until its retire timer fires (1 ms timeout), which TCP measures
/// as RTT.
/// </summary>
[Collection("RealLinks")]
public sealed partial class RealLinkLatencyTests(ITestOutputHelper output)
{
    [RootTheory]
    [InlineData(nameof(AfPacketReceiveRing.V2), 0.5)]
    [InlineData(nameof(AfPacketReceiveRing.V3), MaxV3Milliseconds)]
    public async Task Ping_median_round_trip_stays_within_the_ring_bound(string ringName, double maxMedianMilliseconds)
    {
        var ring = Enum.Parse<AfPacketReceiveRing>(ringName);
        await using var rig = RealLinkRig.Start(RealLinkKind.AfPacket, output, ring: ring);
        var result = rig.Client(TimeSpan.FromSeconds(20), "ping", "-c", "20", "-i", "0.01", "-W", "2", NetnsHarness.StackAddress);
        output.WriteLine(result.Output);
        Assert.True(result.ExitCode == 0, $"ping: {result}");

        var times = RoundTrips(result.Output);
        Assert.Equal(20, times.Count);
        var median = Median(times);
        output.WriteLine($"{ring}: median RTT {median:F3} ms over {times.Count} pings (bound {maxMedianMilliseconds} ms)");
        Assert.True(median < maxMedianMilliseconds, $"{ring}: median ping RTT {median:F3} ms, expected under {maxMedianMilliseconds} ms");
    }

    // Over seven runs on kernel 6.18 (2 cores, loaded) V3's median was 0.17–2.4 ms (single pings up to 16 ms), V2's
    // 0.09–0.13 ms. This bound only checks that V3 still delivers promptly; V2's bound is the latency claim.
    private const double MaxV3Milliseconds = 20;

    private static List<double> RoundTrips(string pingOutput) =>
        [.. RoundTrip().Matches(pingOutput).Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture))];

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    [GeneratedRegex(@"time=([0-9.]+) ms")]
    private static partial Regex RoundTrip();
}
