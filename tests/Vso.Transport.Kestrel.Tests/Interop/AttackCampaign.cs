using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Vso.Transport.Tests.Interop;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>The attack tests run alone: floods and 12,000 connections would skew any test beside them, and theirs.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AttackCollection
{
    public const string Name = "Attacks";
}

/// <summary>
/// Runs every attack scenario of <see cref="AttackTests"/> once per transport, all in one server start (the same
/// scenarios as benchmarks/load/attack.sh), and keeps the figures for the tests to judge. In order, least destructive
/// first, each after a check that the server answers (restarted if not, and logged, so one scenario's damage does not
/// spill into the next): the forged segment, the idle horde and slowloris, the slow flood, the SYN flood.
/// Lazy: a transport's run starts with the first test that asks for it, so skipped tests (not root) start nothing.
/// Every process a run starts is stopped by its PID and its namespaces are deleted by the run itself, also on failure.
/// </summary>
public sealed partial class AttackCampaign
{
    public const int SynFloodSeconds = 15;
    public const int SlowFloodSeconds = 10;
    public const int SlowFloodBurst = 600;
    public const int SlowFloodPerSecond = 5;

    /// <summary>How long attack_clients.py recover tries after a flood (and before each scenario).</summary>
    public const int AnswerLimitSeconds = 5;

    public const int IdleConnections = 10_000;
    public const int SlowlorisConnections = 2_000;

    /// <summary>
    /// The idle horde holds its connections this long after all were answered: past the peak measurement, taken while
    /// the slowloris connections are open (a few seconds after the horde is ready); the RSS after is measured once both
    /// have ended.
    /// </summary>
    private const int HordeHoldSeconds = 15;

    private const int SlowlorisLimitSeconds = 30;

    private readonly Lazy<TransportFigures> _vso = new(() => Run(SampleTransport.Vso));
    private readonly Lazy<TransportFigures> _sockets = new(() => Run(SampleTransport.Sockets));

    internal TransportFigures For(SampleTransport transport) => (transport == SampleTransport.Vso ? _vso : _sockets).Value;

    private static TransportFigures Run(SampleTransport transport)
    {
        var log = new StringBuilder();
        var clock = Stopwatch.StartNew();
        IReadOnlyList<string> namespaces;
        ScenarioOutcome<ForgedSegmentFigures> forged;
        ScenarioOutcome<MemoryFigures> memory;
        ScenarioOutcome<FloodFigures> slow;
        ScenarioOutcome<FloodFigures> syn;
        using (var rig = new AttackRig(transport, log))
        {
            namespaces = rig.Namespaces;
            rig.StartServer();
            forged = Scenario(rig, "forged segment", ForgedSegment);
            memory = Scenario(rig, "memory", Memory);
            slow = Scenario(rig, "slow flood", SlowFlood);
            syn = Scenario(rig, "SYN flood", SynFlood);
        }

        var left = Shell.Run(TimeSpan.FromSeconds(10), "ip", "netns", "list").Output;
        foreach (var ns in namespaces)
        {
            if (left.Contains(ns, StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"Namespace {ns} was left behind.\n{log}");
            }
        }

        log.AppendLine(CultureInfo.InvariantCulture, $"{transport}: {clock.Elapsed.TotalSeconds:F0} s in all");
        return new TransportFigures(transport, forged, memory, slow, syn, clock.Elapsed, log.ToString());
    }

    private static ScenarioOutcome<T> Scenario<T>(AttackRig rig, string name, Func<AttackRig, T> run)
        where T : class
    {
        try
        {
            if (rig.SecondsUntilAnswered(AnswerLimitSeconds) is null)
            {
                rig.Log($"not answering before the {name}: restarting the server");
                rig.RestartServer();
            }

            rig.Log($"{name}: start");
            var figures = run(rig);
            rig.Log($"{name}: {figures}");
            return new ScenarioOutcome<T>(figures, null);
        }
#pragma warning disable CA1031 // Any failure of the harness is this scenario's verdict; the next scenarios still run.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            rig.Log($"{name}: harness failure: {ex}");
            return new ScenarioOutcome<T>(null, ex.ToString());
        }
    }

    /// <summary>forged_segment.py: a control injection with an acceptable ACK, then the attack with one 2^30 behind.</summary>
    private static ForgedSegmentFigures ForgedSegment(AttackRig rig)
    {
        var result = rig.RunClient(TimeSpan.FromSeconds(120), "/usr/bin/python3", rig.Script("forged_segment.py"), AttackRig.ClientDevice, AttackRig.Host, AttackRig.Port);
        var control = Line(result, "control=");
        var attack = Line(result, "attack=");
        return new ForgedSegmentFigures(control, attack);
    }

    /// <summary>
    /// 10,000 keep-alive connections, one request each, then idle; 2,000 slowloris beside them until Kestrel times them
    /// out; then all close. The server's RSS before, with each, and 5 s after all closed.
    /// </summary>
    private static MemoryFigures Memory(AttackRig rig)
    {
        Thread.Sleep(2000);
        var baseMiB = rig.RssMiB();
        using var horde = rig.StartClients("horde", Text(IdleConnections), Text(HordeHoldSeconds));
        if (!horde.WaitForOutput("ready=", TimeSpan.FromSeconds(120)))
        {
            throw new InvalidOperationException($"attack_clients.py horde did not report: {horde.Output} {horde.Error}");
        }

        var answered = Count(HordeReady(), horde.Output, "horde");
        Thread.Sleep(1000);
        var idleMiB = rig.RssMiB();
        rig.Log($"horde: {answered} answered, RSS {idleMiB:F0} MiB");

        using var slowloris = rig.StartClients("slowloris", Text(SlowlorisConnections), Text(SlowlorisLimitSeconds));
        if (!slowloris.WaitForOutput("open=", TimeSpan.FromSeconds(60)))
        {
            throw new InvalidOperationException($"attack_clients.py slowloris did not report: {slowloris.Output} {slowloris.Error}");
        }

        var open = Count(SlowlorisOpen(), slowloris.Output, "slowloris");
        Thread.Sleep(3000); // inside the headers timeout (10 s) of the first connection opened
        var peakMiB = rig.RssMiB();
        rig.Log($"slowloris: {open} open, RSS {peakMiB:F0} MiB");
        var closed = Count(SlowlorisClosed(), slowloris.Wait(TimeSpan.FromSeconds(SlowlorisLimitSeconds + 30)).Output, "slowloris");
        var hordeEnd = horde.Wait(TimeSpan.FromSeconds(HordeHoldSeconds + 60));
        if (!hordeEnd.Output.Contains("closed", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"attack_clients.py horde did not close: {hordeEnd}");
        }

        Thread.Sleep(5000);
        return new MemoryFigures(baseMiB, idleMiB, peakMiB, rig.RssMiB(), answered, open, closed);
    }

    /// <summary>600 SYNs at once from absent on-subnet hosts, then 5 a second (spoofed_syns.py, scapy).</summary>
    private static FloodFigures SlowFlood(AttackRig rig) => Flood(
        rig,
        SlowFloodSeconds,
        new FloodAttack(
            () => rig.StartAttack(
                SlowFloodSeconds + 30,
                "/usr/bin/python3",
                rig.Script("spoofed_syns.py"),
                AttackRig.ClientDevice,
                AttackRig.Host,
                AttackRig.Port,
                Text(SlowFloodBurst),
                Text(SlowFloodPerSecond),
                Text(SlowFloodSeconds),
                "0.5"),
            ReadyLine: "ready",
            attack => Count(SynsSent(), attack.Output, "spoofed_syns.py")));

    /// <summary>hping3 -S --flood --rand-source for 15 s (its SYNs capped by the rig's quota).</summary>
    private static FloodFigures SynFlood(AttackRig rig) => Flood(
        rig,
        SynFloodSeconds,
        new FloodAttack(
            () => rig.StartAttack(SynFloodSeconds, "hping3", "-q", "-S", "--flood", "--rand-source", "-p", AttackRig.Port, AttackRig.Host),
            ReadyLine: null,
            _ => rig.FloodSynsSent()));

    /// <summary>
    /// As attack.sh's flood_case: a keep-alive baseline without the attack (wrk -t1 -c8, 3 s), then wrk keeps 8
    /// keep-alive connections busy from 0.5 s before the attack to its end while a probe opens a new connection every
    /// 0.25 s; after the attack, the time until a new client is answered. The server's log growth over all of it.
    /// </summary>
    private static FloodFigures Flood(AttackRig rig, int seconds, FloodAttack flood)
    {
        var baseline = rig.KeepAliveRequestsPerSecond(3);
        var logBefore = rig.Server.LogLength;
        BackgroundCommand? attack = null;
        BackgroundCommand? wrk = null;
        BackgroundCommand? probe = null;
        try
        {
            if (flood.ReadyLine is { } ready)
            {
                // A script that takes seconds to set up says when it is ready, then floods 0.5 s later.
                attack = flood.Start();
                if (!attack.WaitForOutput(ready, TimeSpan.FromSeconds(30)))
                {
                    throw new InvalidOperationException($"{attack.CommandLine}: not ready: {attack.Output} {attack.Error}");
                }

                wrk = rig.StartKeepAliveLoad(seconds + 1);
            }
            else
            {
                wrk = rig.StartKeepAliveLoad(seconds + 1);
                Thread.Sleep(500);
                attack = flood.Start();
            }

            probe = rig.StartClients("probe", Text(seconds - 1), "0.25");
            var attackEnd = attack.Wait(TimeSpan.FromSeconds(seconds + 30));
            rig.Log($"attack ended: {attack.CommandLine}: exit {attackEnd.ExitCode}, {attackEnd.Output.Trim()} {Tail(attackEnd.Error)}");
            var answered = rig.SecondsUntilAnswered(AnswerLimitSeconds);
            var probeEnd = probe.Wait(TimeSpan.FromSeconds(seconds + 30));
            var wrkEnd = wrk.Wait(TimeSpan.FromSeconds(seconds + 30));
            var logGrowth = rig.Server.LogLength - logBefore;
            rig.Log($"wrk during the attack:\n{wrkEnd.Output.Trim()}");
            var probed = ProbeResult().Match(probeEnd.Output);
            if (!probed.Success)
            {
                throw new InvalidOperationException($"attack_clients.py probe: {probeEnd}");
            }

            return new FloodFigures(
                int.Parse(probed.Groups[1].Value, CultureInfo.InvariantCulture),
                int.Parse(probed.Groups[2].Value, CultureInfo.InvariantCulture),
                AttackRig.ParseRequestsPerSecond(wrkEnd.Output),
                baseline,
                answered,
                logGrowth,
                flood.Packets(attackEnd));
        }
        finally
        {
            probe?.Dispose();
            wrk?.Dispose();
            attack?.Dispose();
        }
    }

    private static string Line(CommandResult result, string prefix)
    {
        foreach (var line in result.Output.Split('\n'))
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                return line.Trim();
            }
        }

        throw new InvalidOperationException($"No '{prefix}' line: {result}");
    }

    private static int Count(Regex pattern, string output, string what)
    {
        var match = pattern.Match(output);
        return match.Success
            ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture)
            : throw new InvalidOperationException($"{what}: no '{pattern}' in: {output}");
    }

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Tail(string text) => text.Length <= 300 ? text.Trim() : "…" + text[^300..].Trim();

    /// <summary>How to start one flood, whether it announces when it is about to begin, and how many packets it sent.</summary>
    private sealed record FloodAttack(Func<BackgroundCommand> Start, string? ReadyLine, Func<CommandResult, long> Packets);

    [GeneratedRegex(@"attempts=(\d+) ok=(\d+)")]
    private static partial Regex ProbeResult();

    [GeneratedRegex(@"ready=(\d+)")]
    private static partial Regex HordeReady();

    [GeneratedRegex(@"open=(\d+)")]
    private static partial Regex SlowlorisOpen();

    [GeneratedRegex(@"server_closed=(\d+)")]
    private static partial Regex SlowlorisClosed();

    [GeneratedRegex(@"sent=(\d+)")]
    private static partial Regex SynsSent();
}
