using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Vso.Transport.Tests.Interop;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>The transport the HelloServer sample runs on in an attack test.</summary>
internal enum SampleTransport
{
    /// <summary>The stack, on AF_PACKET at the server's veth end (no kernel address there).</summary>
    Vso,

    /// <summary>Kestrel's Sockets transport: the kernel's TCP, the reference.</summary>
    Sockets,
}

/// <summary>
/// One transport's attack setup: a fresh pair of namespaces (<see cref="NetnsHarness"/>: client 198.18.0.1/24 and the
/// server's veth end, no default route), the HelloServer sample in the server namespace at 198.18.0.2:8080 on the
/// chosen transport, and the client's tools: wrk, hping3 and the scripts of benchmarks/load (attack_clients.py,
/// spoofed_syns.py, forged_segment.py). The same server configuration on both transports, Kestrel's
/// RequestHeadersTimeout shortened to <see cref="RequestHeadersTimeout"/>. Dispose stops the server by its PID and
/// deletes the namespaces, also after a failure.
/// The attacker is another machine in real life: with two CPUs or more, the attack tools run on the first CPU this
/// process may use and the server and its clients (wrk, the probe, the horde) on the others, the same for the runs
/// without attack, so a flood is judged by what it does to the server rather than by the CPU the flooder burns.
/// </summary>
internal sealed partial class AttackRig : IDisposable
{
    public const string Host = NetnsHarness.StackAddress;
    public const string Port = "8080";
    public const string BaseUrl = "http://198.18.0.2:8080";

    /// <summary>Kestrel's limit on receiving request headers (30 s by default), shortened so slowloris ends sooner.</summary>
    public static readonly TimeSpan RequestHeadersTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// hping3 ignores -c with --flood, so the spoofed SYNs leaving the client namespace are capped by an iptables quota
    /// (SYNs to the port from any source but the client's own): 3 million, 200,000 a second over 15 s.
    /// </summary>
    public const long MaxFloodSyns = 3_000_000;

    private const int SynBytes = 40; // hping3's SYN: IPv4 and TCP headers without options or data

    /// <summary>taskset CPU lists: the attack tools', and the server's and its clients' (null: one CPU, no pinning).</summary>
    private static readonly (string? Attacker, string? Service) Cpus = SplitCpus();

    private readonly NetnsHarness _net;
    private readonly StringBuilder _log;
    private readonly string _scripts;
    private SampleServer? _server;

    public AttackRig(SampleTransport transport, StringBuilder log)
    {
        Transport = transport;
        _log = log;
        _scripts = Path.Combine(SampleServer.RepositoryRoot(), "benchmarks", "load");
        _net = new NetnsHarness(RealLinkKind.AfPacket);
        try
        {
            if (transport == SampleTransport.Sockets)
            {
                NetnsHarness.CheckIn(_net.Server, "ip", "addr", "add", Host + "/24", "dev", _net.StackDevice);
            }

            var quota = (MaxFloodSyns * SynBytes).ToString(CultureInfo.InvariantCulture);
            NetnsHarness.CheckIn(Client, "iptables", "-A", "OUTPUT", "-p", "tcp", "--syn", "--dport", Port, "!", "-s", NetnsHarness.KernelAddress, "-m", "quota", "--quota", quota, "-j", "ACCEPT");
            NetnsHarness.CheckIn(Client, "iptables", "-A", "OUTPUT", "-p", "tcp", "--syn", "--dport", Port, "!", "-s", NetnsHarness.KernelAddress, "-j", "DROP");
        }
        catch
        {
            _net.Dispose();
            throw;
        }
    }

    public SampleTransport Transport { get; }

    /// <summary>The client's namespace.</summary>
    public string Client => _net.Client;

    /// <summary>The client's device, for the scripts that send frames themselves.</summary>
    public static string ClientDevice => NetnsHarness.ClientDevice;

    public IReadOnlyList<string> Namespaces => [_net.Client, _net.Server];

    public SampleServer Server => _server ?? throw new InvalidOperationException("The server is not running.");

    public void Log(string line) => _log.AppendLine(CultureInfo.InvariantCulture, $"[{DateTime.UtcNow:HH:mm:ss.f}] {Transport}: {line}");

    public void StartServer()
    {
        var environment = new Dictionary<string, string>
        {
            ["Transport"] = Transport.ToString(),
            ["Vso__Backend"] = "AfPacket",
            ["Vso__Interface"] = _net.StackDevice,
            ["Vso__Address"] = Host + "/24",
            ["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Warning",
            ["Kestrel__Limits__RequestHeadersTimeout"] = RequestHeadersTimeout.ToString("c", CultureInfo.InvariantCulture),
        };
        _server = SampleServer.Start(_net.Server, environment, "--urls", BaseUrl);
        if (Cpus.Service is { } service)
        {
            // Every thread so far; the runtime's later threads inherit the mask from the ones that create them.
            _ = Shell.Check("taskset", "-a", "-p", "-c", service, _server.Pid.ToString(CultureInfo.InvariantCulture));
        }

        Log($"server started, PID {_server.Pid}, CPUs {Cpus.Service ?? "all"} (attack tools: {Cpus.Attacker ?? "all"})");
        _ = KeepAliveRequestsPerSecond(2); // warm-up (JIT, pools), not recorded
    }

    /// <summary>Stops the server (SIGTERM, then a kill by its PID) and keeps the tail of its log.</summary>
    public void StopServer()
    {
        if (_server is null)
        {
            return;
        }

        var exit = _server.Stop(TimeSpan.FromSeconds(20));
        Log($"server stopped, exit {exit?.ToString(CultureInfo.InvariantCulture) ?? "none (killed)"}, log {_server.LogLength} bytes");
        _log.AppendLine("--- server stdout (ends)").AppendLine(Ends(_server.Output)).AppendLine("--- server stderr (ends)").AppendLine(Ends(_server.Error));
        _server.Dispose();
        _server = null;
    }

    public void RestartServer()
    {
        StopServer();
        StartServer();
    }

    /// <summary>The server's resident set (VmRSS of /proc/PID/status, proc(5)) in MiB.</summary>
    public double RssMiB()
    {
        foreach (var line in File.ReadLines($"/proc/{Server.Pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0; // "VmRSS:  123 kB"
            }
        }

        throw new InvalidOperationException($"No VmRSS for PID {Server.Pid}.");
    }

    /// <summary>Requests/s of wrk -t1 -c8 (keep-alive) over <paramref name="seconds"/>.</summary>
    public double KeepAliveRequestsPerSecond(int seconds)
    {
        var wrk = RunClient(TimeSpan.FromSeconds(seconds + 20), "wrk", "-t1", "-c8", $"-d{seconds}s", BaseUrl + "/");
        return ParseRequestsPerSecond(wrk.Output);
    }

    /// <summary>A client command in the client namespace, on the server's side of the CPUs, run to its end or its timeout.</summary>
    public CommandResult RunClient(TimeSpan timeout, string file, params string[] arguments) =>
        Cpus.Service is { } cpus
            ? NetnsHarness.Exec(Client, timeout, "taskset", ["-c", cpus, file, .. arguments])
            : NetnsHarness.Exec(Client, timeout, file, arguments);

    /// <summary>wrk -t1 -c8 in the background for <paramref name="seconds"/>.</summary>
    public BackgroundCommand StartKeepAliveLoad(int seconds) =>
        StartClient("wrk", "-t1", "-c8", $"-d{seconds}s", BaseUrl + "/");

    /// <summary>benchmarks/load/attack_clients.py MODE HOST PORT ARGS... in the client namespace.</summary>
    public BackgroundCommand StartClients(string mode, params string[] arguments) =>
        StartClient("/usr/bin/python3", [Script("attack_clients.py"), mode, Host, Port, .. arguments]);

    /// <summary>An attack tool in the client namespace, on the attacker's CPU, under `timeout SECONDS` so it ends on its own.</summary>
    public BackgroundCommand StartAttack(int seconds, string file, params string[] arguments)
    {
        string[] timed = ["timeout", seconds.ToString(CultureInfo.InvariantCulture), file, .. arguments];
        return Cpus.Attacker is { } cpu
            ? BackgroundCommand.StartIn(Client, "taskset", ["-c", cpu, .. timed])
            : BackgroundCommand.StartIn(Client, timed[0], timed[1..]);
    }

    public string Script(string name) => Path.Combine(_scripts, name);

    /// <summary>Seconds until a new connection is first answered (attack_clients.py recover), null if not within the limit.</summary>
    public double? SecondsUntilAnswered(int limitSeconds)
    {
        using var recover = StartClients("recover", limitSeconds.ToString(CultureInfo.InvariantCulture));
        var result = recover.Wait(TimeSpan.FromSeconds(limitSeconds + 15));
        var match = RecoveredAfter().Match(result.Output);
        if (!match.Success)
        {
            throw new InvalidOperationException($"attack_clients.py recover: {result}");
        }

        return match.Groups[1].Value == "inf" ? null : double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>SYNs the quota let out of the client namespace (the packet counter of the ACCEPT rule).</summary>
    public long FloodSynsSent()
    {
        var rules = NetnsHarness.CheckIn(Client, "iptables", "-L", "OUTPUT", "-v", "-x", "-n");
        var match = QuotaRule().Match(rules);
        return match.Success ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : -1;
    }

    public static double ParseRequestsPerSecond(string wrkOutput)
    {
        var match = RequestsPerSecond().Match(wrkOutput);
        return match.Success ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }

    public void Dispose()
    {
        try
        {
            StopServer();
        }
        finally
        {
            _net.Dispose();
        }
    }

    private BackgroundCommand StartClient(string file, params string[] arguments) =>
        Cpus.Service is { } cpus
            ? BackgroundCommand.StartIn(Client, "taskset", ["-c", cpus, file, .. arguments])
            : BackgroundCommand.StartIn(Client, file, arguments);

    /// <summary>The CPUs this process may use (sched_getaffinity): the first for the attack tools, the rest for the server.</summary>
    private static (string? Attacker, string? Service) SplitCpus()
    {
        if (!OperatingSystem.IsLinux())
        {
            return (null, null);
        }

        using var self = System.Diagnostics.Process.GetCurrentProcess();
        var mask = (ulong)(long)self.ProcessorAffinity;
        var cpus = new List<int>();
        for (var cpu = 0; cpu < 64; cpu++)
        {
            if ((mask & (1UL << cpu)) != 0)
            {
                cpus.Add(cpu);
            }
        }

        return cpus.Count < 2
            ? (null, null)
            : (cpus[0].ToString(CultureInfo.InvariantCulture), string.Join(',', cpus.Skip(1).Select(c => c.ToString(CultureInfo.InvariantCulture))));
    }

    private static string Ends(string text, int each = 2048) =>
        text.Length <= 2 * each ? text : $"{text[..each]}\n[… {text.Length - 2 * each} characters …]\n{text[^each..]}";

    [GeneratedRegex(@"Requests/sec:\s+([0-9.]+)")]
    private static partial Regex RequestsPerSecond();

    [GeneratedRegex(@"recovered_after=([0-9.]+|inf)")]
    private static partial Regex RecoveredAfter();

    [GeneratedRegex(@"^\s*(\d+)\s+\d+\s+ACCEPT\s.*quota", RegexOptions.Multiline)]
    private static partial Regex QuotaRule();
}
