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
    /// a multi-queue device) and on AfXdp (one socket each on its own receive queue); one with a capture, whose file is one
    /// ordered trace.
    /// </summary>
    public static int EngineCount(VsoTransportOptions o) =>
        (o.Backend is VsoBackend.AfPacket or VsoBackend.Tap or VsoBackend.AfXdp) && string.IsNullOrWhiteSpace(o.Capture.PcapPath) ? o.Engines : 1;

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
