using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Vso.Transport.Native;

namespace Vso.Transport.Tests.Interop;

public enum RealLinkKind
{
    AfPacket,
    Tap,

    /// <summary>An AF_XDP socket (with the stack's own XDP program) on the server's veth end: the AF_PACKET topology.</summary>
    AfXdp,
}

/// <summary>
/// A private test network made of network namespaces, deleted on <see cref="Dispose"/> (and, if a run was killed,
/// by the next run: namespaces named vso-*-PID-N whose PID is dead are removed at start).
/// AF_PACKET: a client namespace whose veth end has the kernel address 198.18.0.1/24, and a server namespace
/// holding the peer end with no kernel address and IPv6 off; the stack binds to that end.
/// AF_XDP: the same two namespaces as AF_PACKET.
/// TAP: one namespace; the stack creates the TAP device in it with the kernel side at 198.18.0.1/24.
/// Offloads are off on every device; there are no default routes, so traffic goes nowhere else.
/// </summary>
internal sealed partial class NetnsHarness : IDisposable
{
    public const string KernelAddress = "198.18.0.1";
    public const string StackAddress = "198.18.0.2";
    public const string ClientDevice = "vsoc0";
    public const string ServerDevice = "vsos0";
    public const string TapDevice = "vsotap0";

    private static int _counter;
    private readonly List<string> _namespaces = [];
    private bool _disposed;

    /// <param name="queues">Receive and transmit queues of each veth end (AF_PACKET/AF_XDP topology), for multi-queue tests.</param>
    public NetnsHarness(RealLinkKind kind, bool offloadsOff = true, int queues = 1)
    {
        Kind = kind;
        Queues = queues;
        CleanupStale();
        var n = Interlocked.Increment(ref _counter);
        var pid = Environment.ProcessId;
        var tag = Tag();
        Client = $"vso-c{tag}-{pid}-{n}";
        try
        {
            AddNamespace(Client);
            if (kind is RealLinkKind.AfPacket or RealLinkKind.AfXdp)
            {
                Server = $"vso-s{tag}-{pid}-{n}";
                AddNamespace(Server);
                var q = queues.ToString(System.Globalization.CultureInfo.InvariantCulture);
                Shell.Check("ip", "-n", Client, "link", "add", ClientDevice, "numtxqueues", q, "numrxqueues", q, "type", "veth", "peer", "name", ServerDevice, "numtxqueues", q, "numrxqueues", q, "netns", Server);
                Shell.Check("ip", "-n", Client, "addr", "add", $"{KernelAddress}/24", "dev", ClientDevice);
                Shell.Check("ip", "-n", Client, "link", "set", ClientDevice, "up");
                Shell.Check("ip", "-n", Server, "link", "set", ServerDevice, "up");
                if (offloadsOff)
                {
                    OffloadsOff(Client, ClientDevice);
                    OffloadsOff(Server, ServerDevice);
                }
                StackDevice = ServerDevice;
                ClientCaptureDevice = ClientDevice;
            }
            else
            {
                Server = Client;
                StackDevice = TapDevice;
                ClientCaptureDevice = TapDevice;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public RealLinkKind Kind { get; }

    /// <summary>Receive and transmit queues of each veth end.</summary>
    public int Queues { get; }

    /// <summary>The namespace of the kernel client (curl, ping, tshark, nstat, iptables).</summary>
    public string Client { get; }

    /// <summary>The namespace the stack's link lives in (the client's for TAP).</summary>
    public string Server { get; }

    /// <summary>The device the stack binds to (AF_PACKET) or creates (TAP).</summary>
    public string StackDevice { get; }

    /// <summary>The kernel client's device, for tshark and tc.</summary>
    public string ClientCaptureDevice { get; }

    /// <summary>
    /// TAP only: makes a persistent TAP device in the namespace (`ip tuntap add dev vsotap0 mode tap`), with the kernel
    /// side at <see cref="KernelAddress"/>/24, up and offloads off, for a link that attaches to it (Create = false).
    /// It goes with the namespace on <see cref="Dispose"/>.
    /// </summary>
    public void CreatePersistentTap()
    {
        if (Kind != RealLinkKind.Tap)
        {
            throw new InvalidOperationException("A persistent TAP device belongs to the TAP rig.");
        }

        CheckIn(Client, "ip", "tuntap", "add", "dev", TapDevice, "mode", "tap");
        CheckIn(Client, "ip", "addr", "add", $"{KernelAddress}/24", "dev", TapDevice);
        CheckIn(Client, "ip", "link", "set", TapDevice, "up");
    }

    /// <summary>Call after a TAP link created its device: turns its offloads off.</summary>
    public void PrepareTapDevice() => OffloadsOff(Client, TapDevice);

    /// <summary>Runs <paramref name="action"/> on a fresh thread that has entered <paramref name="ns"/>: sockets and TAP fds opened there stay bound to it.</summary>
    public static T RunIn<T>(string ns, Func<T> action)
    {
        T result = default!;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                var fd = LinuxNative.open($"/var/run/netns/{ns}", LinuxNative.O_RDONLY | LinuxNative.O_CLOEXEC);
                if (fd < 0)
                {
                    throw new InvalidOperationException($"open /var/run/netns/{ns}: errno {Marshal.GetLastPInvokeError()}");
                }

                try
                {
                    if (LinuxNative.setns(fd, LinuxNative.CLONE_NEWNET) < 0)
                    {
                        throw new InvalidOperationException($"setns {ns}: errno {Marshal.GetLastPInvokeError()}");
                    }
                }
                finally
                {
                    _ = LinuxNative.close(fd);
                }

                result = action();
            }
            catch (Exception ex)
            {
                error = ex;
            }
        });
        thread.Start();
        thread.Join();
        if (error is not null)
        {
            throw error;
        }

        return result;
    }

    /// <summary>Runs a command inside a namespace with a time limit.</summary>
    public static CommandResult Exec(string ns, TimeSpan timeout, string file, params string[] arguments) =>
        Shell.Run(timeout, "ip", ["netns", "exec", ns, file, .. arguments]);

    public static Task<CommandResult> ExecAsync(string ns, TimeSpan timeout, string file, params string[] arguments) =>
        Task.Run(() => Exec(ns, timeout, file, arguments));

    /// <summary>Random loss in both directions on the client (iptables statistic match on INPUT and OUTPUT).</summary>
    public void AddLoss(double probability)
    {
        var p = probability.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture);
        foreach (var chain in new[] { "INPUT", "OUTPUT" })
        {
            CheckIn(Client, "iptables", "-A", chain, "-p", "tcp", "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP");
        }
    }

    /// <summary>A token bucket on the client's device (egress, towards the stack).</summary>
    public void AddRateLimit(string rate = "100mbit") =>
        CheckIn(Client, "tc", "qdisc", "add", "dev", ClientCaptureDevice, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "50ms");

    public static string CheckIn(string ns, string file, params string[] arguments)
    {
        var result = Exec(ns, TimeSpan.FromSeconds(30), file, arguments);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"`ip netns exec {ns} {file} {string.Join(' ', arguments)}` failed: {result}");
        }

        return result.Output;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var ns in _namespaces)
        {
            _ = Shell.Run(TimeSpan.FromSeconds(30), "ip", "netns", "delete", ns);
        }
    }

    /// <summary>Deletes namespaces named vso-*-PID-N left by processes that no longer run.</summary>
    public static void CleanupStale()
    {
        var list = Shell.Run(TimeSpan.FromSeconds(10), "ip", "netns", "list");
        foreach (var line in list.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = line.Split(' ')[0];
            var match = StaleName().Match(name);
            if (match.Success && int.TryParse(match.Groups[1].Value, out var pid) && !IsAlive(pid))
            {
                _ = Shell.Run(TimeSpan.FromSeconds(30), "ip", "netns", "delete", name);
            }
        }
    }

    /// <summary>VSO_NETNS_TAG (letters only, lower-cased): who made a namespace, when several test runs share a machine.</summary>
    private static string Tag()
    {
        var tag = Environment.GetEnvironmentVariable("VSO_NETNS_TAG") ?? "";
        var letters = new System.Text.StringBuilder();
        foreach (var c in tag)
        {
            if (char.IsAsciiLetter(c) && letters.Length < 8)
            {
                letters.Append(char.ToLowerInvariant(c));
            }
        }

        return letters.ToString();
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private void AddNamespace(string ns)
    {
        Shell.Check("ip", "netns", "add", ns);
        _namespaces.Add(ns);
        CheckIn(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1");
        CheckIn(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1");
        Shell.Check("ip", "-n", ns, "link", "set", "lo", "up");
    }

    /// <summary>Sets features of a device in a namespace (ethtool -K DEVICE FEATURE on|off ...).</summary>
    public static void SetFeatures(string ns, string device, params string[] features) =>
        _ = CheckIn(ns, "ethtool", ["-K", device, .. features]);

    private static void OffloadsOff(string ns, string device) =>
        _ = Exec(ns, TimeSpan.FromSeconds(30), "ethtool", "-K", device, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off");

    [GeneratedRegex(@"^vso-[a-z]+-(\d+)-\d+$")]
    private static partial Regex StaleName();
}
