using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using Microsoft.Extensions.Logging;
using Vso.Transport.Api;
using Vso.Transport.Links;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel;

/// <summary>Turns validated <see cref="VsoTransportOptions"/> into a link and a started <see cref="VsoStack"/>.</summary>
internal static class StackFactory
{
    public static TcpSettings ToTcpSettings(VsoTransportOptions o)
    {
        var t = o.Tcp;
        return new TcpSettings
        {
            Sack = t.Sack,
            Timestamps = t.Timestamps,
            WindowScaling = t.WindowScaling,
            InitialRto = t.InitialRto,
            MinRto = t.MinRto,
            MaxRto = t.MaxRto,
            DelayedAck = t.DelayedAck,
            Nagle = t.Nagle,
            ReceiveBufferSize = t.ReceiveBufferSize,
            MemoryLimit = t.MemoryLimit,
            MaxHalfOpen = t.MaxHalfOpen,
            SynCookies = t.SynCookies,
            IdentifyMode = o.IdentifyMode,
            CongestionControl = t.CongestionControl switch
            {
                VsoCongestionControl.Cubic => VsoAlgorithms.CubicCongestionControl,
                _ => VsoAlgorithms.NewRenoCongestionControl,
            },
            LossRecovery = t.LossRecovery switch
            {
                VsoLossRecovery.Rto => VsoAlgorithms.RtoRecovery,
                VsoLossRecovery.NewReno => VsoAlgorithms.NewRenoRecovery,
                _ => VsoAlgorithms.RackTlpRecovery,
            },
        };
    }

    public static VsoStackOptions ToStackOptions(VsoTransportOptions o)
    {
        if (!VsoTransportOptionsValidator.TryParseCidr(o.Address, out var address, out var prefix))
        {
            throw new ArgumentException($"Vso:Address = '{o.Address}' is invalid: give the stack's IPv4 address with its prefix length, such as 198.18.0.2/24.");
        }

        IPAddress? gateway = null;
        if (!string.IsNullOrWhiteSpace(o.Gateway))
        {
            gateway = IPAddress.Parse(o.Gateway.Trim());
        }

        return new VsoStackOptions
        {
            Address = address,
            PrefixLength = prefix,
            Gateway = gateway,
            ListenBacklog = o.Tcp.Backlog,
            Tcp = ToTcpSettings(o),
            Mlock = o.Pinning.Mlock,
            BusyPollMicroseconds = o.BusyPollMicroseconds,
            TurnOnCallingThread = o.TurnOnCallingThread,
        };
    }

    /// <summary>Opens the configured link and the stack on it; a link that fails names the configuration keys to change.</summary>
    /// <param name="pool">The transport's block pool: an AF_XDP UMEM covers its contiguous region, if it has one.</param>
    public static VsoStack CreateStack(VsoTransportOptions o, VsoStackOptions stackOptions, ILoggerFactory loggerFactory, MemoryPinning.PinnedBlockPool? pool = null)
    {
        stackOptions.Engines = EngineCount(o);
        try
        {
            return new VsoStack(CreateLinkOptions(o, pool), stackOptions, virtualTime: null, loggerFactory);
        }
        catch (IOException ex)
        {
            // Several engines open several queues (and on Tap a steering program): name the key, as its fix may be Engines = 1.
            var engines = stackOptions.Engines > 1 ? string.Create(CultureInfo.InvariantCulture, $", Vso:Engines = '{stackOptions.Engines}'") : "";
            throw new IOException(
                string.Create(CultureInfo.InvariantCulture, $"The Vso transport could not open its link (Vso:Backend = '{o.Backend}', Vso:Interface = '{o.Interface}'{engines}): {ex.Message}"),
                ex);
        }
    }

    /// <summary>
    /// The engines the stack runs: Vso:Engines on AfPacket (one socket each in a fanout group), on Tap (one queue each of
    /// a multi-queue device) and on AfXdp (one socket each on its own receive queue), or, with Vso:Engines = 0 (the
    /// default), <see cref="AutomaticEngines"/>; one with a capture, whose file is one ordered trace.
    /// </summary>
    public static int EngineCount(VsoTransportOptions o)
    {
        if (o.Backend is not (VsoBackend.AfPacket or VsoBackend.Tap or VsoBackend.AfXdp) || !string.IsNullOrWhiteSpace(o.Capture.PcapPath))
        {
            return 1;
        }

        return o.Engines > 0 ? o.Engines : AutomaticEngines(o);
    }

    /// <summary>
    /// One engine per processor but one wherever the link can give each engine its own queue: AfPacket (a fanout group),
    /// a Tap device the stack creates or an existing multi-queue one (tun_flags in sysfs); on AfXdp no more than the
    /// interface has receive queues from AfXdp:Queue on (or a divisor of AfXdp:Queues), so that no engine waits on a
    /// queue that does not exist; 1 on a single-queue Tap device. One processor is left to the thread pool, which runs
    /// what does not run on the engines (connections' first requests, HTTP/2 streams, TLS, the GC): on the 2-core VM one
    /// engine served plaintext -c64 at 1.30x Sockets against 1.15x with two (benchmarks/README.md, "Session 9").
    /// </summary>
    internal static int AutomaticEngines(VsoTransportOptions o)
    {
        var processors = Math.Clamp(Environment.ProcessorCount - 1, 1, 64);
        switch (o.Backend)
        {
            case VsoBackend.AfPacket:
                return processors;
            case VsoBackend.Tap:
                return o.Tap.Create || IsMultiQueueTap(o.Interface) ? processors : 1;
            case VsoBackend.AfXdp when o.AfXdp.Queues > 1:
                for (var n = Math.Min(processors, o.AfXdp.Queues); n > 1; n--)
                {
                    if (o.AfXdp.Queues % n == 0)
                    {
                        return n;
                    }
                }

                return 1;
            case VsoBackend.AfXdp:
                return Math.Clamp(ReceiveQueues(o.Interface) - o.AfXdp.Queue, 1, processors);
            default:
                return 1;
        }
    }

    private const int IffMultiQueue = 0x0100;   // linux/if_tun.h

    private static bool IsMultiQueueTap(string name)
    {
        try
        {
            var flags = File.ReadAllText($"/sys/class/net/{name}/tun_flags").Trim();
            return int.TryParse(flags.StartsWith("0x", StringComparison.Ordinal) ? flags[2..] : flags, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var f)
                && (f & IffMultiQueue) != 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static int ReceiveQueues(string name)
    {
        try
        {
            return Directory.GetDirectories($"/sys/class/net/{name}/queues", "rx-*").Length;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 1;
        }
    }

    /// <summary>The link the configured backend opens; an AF_XDP link registers <paramref name="pool"/> as its UMEM when given.</summary>
    public static VsoLinkOptions CreateLinkOptions(VsoTransportOptions o, MemoryPinning.PinnedBlockPool? pool = null)
    {
        VsoLinkOptions link;
        if (o.Backend == VsoBackend.Tap)
        {
            var tap = new TapLinkOptions
            {
                Name = o.Interface,
                Create = o.Tap.Create,
                Mtu = o.Mtu,
                HardwareAddress = string.IsNullOrWhiteSpace(o.MacAddress) ? null : PhysicalAddress.Parse(o.MacAddress.Trim()),
                SegmentationOffload = o.Tap.SegmentationOffload,
            };
            if (VsoTransportOptionsValidator.TryParseCidr(o.Tap.HostAddress, out var host, out var hostPrefix))
            {
                tap.KernelAddress = host;
                tap.KernelPrefixLength = hostPrefix;
            }

            link = tap;
        }
        else if (o.Backend == VsoBackend.AfXdp)
        {
            link = new AfXdpLinkOptions
            {
                InterfaceName = o.Interface,
                Queue = o.AfXdp.Queue,
                Mode = o.AfXdp.Mode,
                RingSize = o.AfXdp.RingSize,
                Queues = o.AfXdp.Queues,
                UmemPool = o.IdentifyMode == IdentifyMode.Pinned && o.AfXdp.UmemBytes > 0 ? pool : null,
            };
        }
        else
        {
            link = new AfPacketLinkOptions
            {
                InterfaceName = o.Interface,
                SegmentationOffload = o.AfPacket.SegmentationOffload,
                KernelFilter = o.AfPacket.KernelFilter,
            };
        }

        link.CapturePath = string.IsNullOrWhiteSpace(o.Capture.PcapPath) ? null : o.Capture.PcapPath;
        return link;
    }
}
