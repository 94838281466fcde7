using System.Globalization;
using System.Text;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>What one flood did to the server: new connections, keep-alive throughput, the answer after it, its log.</summary>
internal sealed record FloodFigures(
    int Attempts,
    int Succeeded,
    double RequestsPerSecond,
    double BaselineRequestsPerSecond,
    double? SecondsUntilAnswered,
    long LogGrowthBytes,
    long AttackPackets)
{
    public double SucceededShare => Attempts == 0 ? 0 : (double)Succeeded / Attempts;

    public double ThroughputRatio => BaselineRequestsPerSecond <= 0 ? 0 : RequestsPerSecond / BaselineRequestsPerSecond;

    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"new connections {Succeeded}/{Attempts} ({100 * SucceededShare:F1}%), keep-alive {RequestsPerSecond:F0} req/s = {ThroughputRatio:F2} of {BaselineRequestsPerSecond:F0} without, "
        + $"answered {(SecondsUntilAnswered is { } s ? $"{s:F2} s" : $"not within {AttackCampaign.AnswerLimitSeconds} s")} after, log +{LogGrowthBytes / 1024.0:F1} KiB, {AttackPackets} attack packets");
}

/// <summary>The server's resident set before, with the idle horde, with the horde and slowloris, and after both closed.</summary>
internal sealed record MemoryFigures(
    double BaseMiB,
    double IdleMiB,
    double PeakMiB,
    double AfterMiB,
    int HordeAnswered,
    int SlowlorisOpen,
    int SlowlorisClosedByServer)
{
    public double IdleGrowthMiB => IdleMiB - BaseMiB;

    public double PeakGrowthMiB => PeakMiB - BaseMiB;

    public double ResidualGrowthMiB => AfterMiB - BaseMiB;

    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"RSS {BaseMiB:F0} MiB before; {HordeAnswered} idle answered: +{IdleGrowthMiB:F0}; with {SlowlorisOpen} slowloris: +{PeakGrowthMiB:F0}; "
        + $"slowloris closed by the server {SlowlorisClosedByServer}; after all closed: {ResidualGrowthMiB:+0;-0} MiB");
}

/// <summary>The two injections of forged_segment.py: its verdict lines (intact, injected, other or error).</summary>
internal sealed record ForgedSegmentFigures(string Control, string Attack)
{
    public string ControlVerdict => Verdict(Control);

    public string AttackVerdict => Verdict(Attack);

    public override string ToString() => $"control (acceptable ACK): {Control}; attack (ACK 2^30 behind): {Attack}";

    private static string Verdict(string line)
    {
        var value = line[(line.IndexOf('=', StringComparison.Ordinal) + 1)..];
        var end = value.IndexOf(' ', StringComparison.Ordinal);
        return end < 0 ? value : value[..end];
    }
}

/// <summary>A scenario's figures, or why the harness could not measure them (which fails the scenario's tests).</summary>
internal sealed record ScenarioOutcome<T>(T? Figures, string? Failure)
    where T : class
{
    public T Get() => Figures ?? throw new InvalidOperationException("The scenario did not complete: " + Failure);

    public override string ToString() => Figures?.ToString() ?? "FAILED: " + Failure;
}

/// <summary>Everything one transport's run measured, with its log.</summary>
internal sealed record TransportFigures(
    SampleTransport Transport,
    ScenarioOutcome<ForgedSegmentFigures> ForgedSegment,
    ScenarioOutcome<MemoryFigures> Memory,
    ScenarioOutcome<FloodFigures> SlowFlood,
    ScenarioOutcome<FloodFigures> SynFlood,
    TimeSpan Elapsed,
    string Log)
{
    public string Summary()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{Transport} ({Elapsed.TotalSeconds:F0} s):");
        text.AppendLine(CultureInfo.InvariantCulture, $"  forged segment: {ForgedSegment}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  memory:         {Memory}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  slow flood:     {SlowFlood}");
        text.AppendLine(CultureInfo.InvariantCulture, $"  SYN flood:      {SynFlood}");
        return text.ToString();
    }
}
