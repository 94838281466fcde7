using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Vso.Transport.Api;

namespace Vso.Transport.Kestrel;

/// <summary>
/// Validates <see cref="VsoTransportOptions"/> when the host starts (ValidateOnStart). Each failure names the
/// configuration key, the bad value and the fix, so that a wrong environment variable is found at once.
/// </summary>
internal sealed class VsoTransportOptionsValidator : IValidateOptions<VsoTransportOptions>
{
    public ValidateOptionsResult Validate(string? name, VsoTransportOptions options)
    {
        var failures = Check(options);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    public static List<string> Check(VsoTransportOptions o)
    {
        // Values that did not parse come first: the keys they belong to kept their defaults.
        var failures = new List<string>(VsoTransportOptionsBinder.FailuresOf(o));
        void Fail(string key, object? value, string fix) => failures.Add(Invalid(key, value, fix));

        if (!Enum.IsDefined(o.Backend))
        {
            Fail("Backend", o.Backend, "use AfPacket, Tap or AfXdp" + EnumNote("Backend"));
        }

        if (string.IsNullOrWhiteSpace(o.Interface) || o.Interface.Length > 15)
        {
            Fail("Interface", o.Interface, o.Backend == VsoBackend.Tap
                ? "give the TAP device's name (1 to 15 characters), such as vso0 (Vso__Interface=vso0)"
                : "give the name (1 to 15 characters) of an interface without a kernel IPv4 address, such as a veth end (Vso__Interface=veth1)");
        }

        if (!TryParseCidr(o.Address, out _, out _))
        {
            Fail("Address", o.Address, "give the stack's IPv4 address with its prefix length, such as 198.18.0.2/24 (Vso__Address=198.18.0.2/24)");
        }

        if (!string.IsNullOrWhiteSpace(o.Gateway) && !TryParseAddress(o.Gateway, out _))
        {
            Fail("Gateway", o.Gateway, "give an IPv4 address such as 198.18.0.1, or leave it empty for none");
        }

        if (!string.IsNullOrWhiteSpace(o.MacAddress))
        {
            if (o.Backend != VsoBackend.Tap)
            {
                Fail("MacAddress", o.MacAddress, "only the Tap backend sets its own MAC; AfPacket and AfXdp use the interface's (`ip link set DEV address ...`), so leave it empty");
            }
            else if (!TryParseMac(o.MacAddress, out var mac) || (mac.GetAddressBytes()[0] & 1) != 0 || mac.GetAddressBytes().AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                Fail("MacAddress", o.MacAddress, "give a unicast MAC such as 02:00:00:00:00:02, or leave it empty for a random one");
            }
        }

        if (o.Mtu is { } mtu)
        {
            if (o.Backend != VsoBackend.Tap)
            {
                Fail("Mtu", mtu, "only the Tap backend sets the MTU; for AfPacket and AfXdp set the interface's (`ip link set DEV mtu N`) and leave Mtu empty");
            }
            else if (mtu is < 576 or > 65521)
            {
                Fail("Mtu", mtu, "use " + AcceptedRange("Mtu"));
            }
        }

        if (!Enum.IsDefined(o.IdentifyMode))
        {
            Fail("IdentifyMode", o.IdentifyMode, "use Pinned or Copy");
        }

        if (!string.IsNullOrWhiteSpace(o.Tap.HostAddress))
        {
            if (!TryParseCidr(o.Tap.HostAddress, out var host, out var hostPrefix) || hostPrefix is < 1 or > 31)
            {
                Fail("Tap:HostAddress", o.Tap.HostAddress, "give the kernel side's address with a prefix length of 1 to 31, such as 198.18.0.1/24, or leave it empty for none");
            }
            else if (TryParseCidr(o.Address, out var stack, out _) && host.Equals(stack))
            {
                Fail("Tap:HostAddress", o.Tap.HostAddress, "the kernel side needs an address other than the stack's (Vso:Address), such as 198.18.0.1/24");
            }
        }

        if (o.AfXdp.Queue is < 0 or > 65535)
        {
            Fail("AfXdp:Queue", o.AfXdp.Queue, "use " + AcceptedRange("AfXdp:Queue"));
        }

        if (!Enum.IsDefined(o.AfXdp.Mode))
        {
            Fail("AfXdp:Mode", o.AfXdp.Mode, "use Auto, ZeroCopy, Copy or Skb");
        }

        if (o.AfXdp.RingSize is < 64 or > 32768 || (o.AfXdp.RingSize & (o.AfXdp.RingSize - 1)) != 0)
        {
            Fail("AfXdp:RingSize", o.AfXdp.RingSize, "use " + AcceptedRange("AfXdp:RingSize"));
        }

        if (o.AfXdp.Queues < 1 || o.AfXdp.Queue + o.AfXdp.Queues > 65536)
        {
            Fail("AfXdp:Queues", o.AfXdp.Queues, "use " + AcceptedRange("AfXdp:Queues"));
        }

        // With several engines each serves its own queues: at least one each (StackFactory.EngineCount).
        var xdpEngines = o.Backend == VsoBackend.AfXdp ? StackFactory.EngineCount(o) : 1;
        if (xdpEngines > 1 && o.AfXdp.Queues != 1 && o.AfXdp.Queues % xdpEngines != 0)
        {
            Fail("AfXdp:Queues", o.AfXdp.Queues, $"with Engines = {xdpEngines} each engine serves its own receive queues: use 1 (one queue per engine, from AfXdp:Queue on) or a multiple of {xdpEngines}");
        }

        var umemFloor = ((long)Math.Max(o.AfXdp.Queues, xdpEngines) * 2 * o.AfXdp.RingSize * 4096) + (1 << 20);
        if (o.AfXdp.UmemBytes != 0 && (o.AfXdp.UmemBytes < umemFloor || o.AfXdp.UmemBytes % 4096 != 0))
        {
            Fail("AfXdp:UmemBytes", o.AfXdp.UmemBytes, $"use 0 (a private UMEM, frames copied) or a multiple of 4096 of at least {umemFloor} (the sockets' frames, 2 x AfXdp:RingSize x 4096 per queue served, and 1 MiB for blocks)");
        }
        else if (o.AfXdp.UmemBytes != 0 && o.Backend == VsoBackend.AfXdp && o.Pinning.BlockSize < 4096)
        {
            Fail("AfXdp:UmemBytes", o.AfXdp.UmemBytes, "a UMEM over the pinned pool needs Pinning:BlockSize of at least 4096 (a UMEM frame); raise it or set AfXdp:UmemBytes = 0");
        }

        var t = o.Tcp;
        if (!Enum.IsDefined(t.CongestionControl))
        {
            Fail("Tcp:CongestionControl", t.CongestionControl, "use NewReno or Cubic");
        }

        if (!Enum.IsDefined(t.LossRecovery))
        {
            Fail("Tcp:LossRecovery", t.LossRecovery, "use Rto, NewReno or RackTlp");
        }

        if (t.LossRecovery == VsoLossRecovery.RackTlp && !t.Sack)
        {
            Fail("Tcp:LossRecovery", t.LossRecovery, "RackTlp needs SACK (RFC 8985 §2): set Tcp:Sack = true or choose NewReno");
        }

        if (t.Backlog is < 1 or > 65535)
        {
            Fail("Tcp:Backlog", t.Backlog, "use " + AcceptedRange("Tcp:Backlog"));
        }

        if (o.Pinning.BlockSize is < 1024 or > (1 << 20) || (o.Pinning.BlockSize & (o.Pinning.BlockSize - 1)) != 0)
        {
            Fail("Pinning:BlockSize", o.Pinning.BlockSize, "use " + AcceptedRange("Pinning:BlockSize"));
        }

        if (o.Pinning.SlabSize is < 4096 or > (64 << 20) || o.Pinning.SlabSize % 4096 != 0)
        {
            Fail("Pinning:SlabSize", o.Pinning.SlabSize, "use " + AcceptedRange("Pinning:SlabSize"));
        }

        if (o.Pinning.MaxBytes is < (1 << 20))
        {
            Fail("Pinning:MaxBytes", o.Pinning.MaxBytes, "use " + AcceptedRange("Pinning:MaxBytes"));
        }

        if (o.MaxWriteBufferSize < 64 * 1024)
        {
            Fail("MaxWriteBufferSize", o.MaxWriteBufferSize, "use " + AcceptedRange("MaxWriteBufferSize"));
        }

        if (o.MaxReadBufferSize < 16 * 1024)
        {
            Fail("MaxReadBufferSize", o.MaxReadBufferSize, "use " + AcceptedRange("MaxReadBufferSize"));
        }

        if (!string.IsNullOrWhiteSpace(o.Capture.PcapPath))
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(o.Capture.PcapPath));
            if (dir is not null && !Directory.Exists(dir))
            {
                Fail("Capture:PcapPath", o.Capture.PcapPath, $"the directory '{dir}' does not exist: create it or choose another path");
            }
        }

        if (!Enum.IsDefined(o.ProxyProtocol))
        {
            Fail("ProxyProtocol", o.ProxyProtocol, "use None, V1, V2 or Any");
        }

        if (!ProxyProtocolPolicy.TryParseTrusted(o.ProxyProtocolTrustedAddresses, out _)
            && (o.ProxyProtocol != VsoProxyProtocol.None || !string.IsNullOrWhiteSpace(o.ProxyProtocolTrustedAddresses)))
        {
            Fail("ProxyProtocolTrustedAddresses", o.ProxyProtocolTrustedAddresses,
                "give the balancers' IPv4 addresses or CIDR ranges separated by commas, such as 198.18.0.1, 10.0.0.0/8 (0.0.0.0/0 trusts every source)");
        }

        if (!ProxyProtocolPolicy.TryParsePorts(o.ProxyProtocolPorts, out _))
        {
            Fail("ProxyProtocolPorts", o.ProxyProtocolPorts, "give ports 1 to 65535 separated by commas, such as 8080, 8443, or leave it empty for every endpoint on the stack");
        }

        if (o.ProxyProtocolTimeout <= TimeSpan.Zero || o.ProxyProtocolTimeout > TimeSpan.FromHours(1))
        {
            Fail("ProxyProtocolTimeout", o.ProxyProtocolTimeout, "use more than 00:00:00 and at most 01:00:00, such as 00:00:05 (proxy-protocol.txt asks for at least 3 s)");
        }

        if (o.DrainTimeout < TimeSpan.Zero || o.DrainTimeout > TimeSpan.FromHours(1))
        {
            Fail("DrainTimeout", o.DrainTimeout, "use 00:00:00 (reset at once) to 01:00:00, such as 00:00:30; Kestrel aborts at HostOptions.ShutdownTimeout anyway");
        }

        if (!Enum.IsDefined(o.DrainNewConnections))
        {
            Fail("DrainNewConnections", o.DrainNewConnections, "use Reset or Drop");
        }

        if (o.Engines is < 0 or > 64)
        {
            Fail("Engines", o.Engines, "use 0 (one engine per processor but one, where the link has a queue for each) or 1 to 64 engine threads, such as the processor count (" + Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture) + ")");
        }

        if (o.BusyPollMicroseconds is < 0 or > 1000)
        {
            Fail("BusyPollMicroseconds", o.BusyPollMicroseconds, "use 0 (off) to 1000 microseconds, such as 50");
        }

        // The stack's own checks (RTO bounds, delayed ACK, buffer sizes) name the Tcp:* key already.
        try
        {
            StackFactory.ToTcpSettings(o).Validate();
        }
        catch (ArgumentException ex)
        {
            failures.Add("Vso:" + ex.Message.Split(" (Parameter", 2)[0]);
        }

        return failures;
    }

    /// <summary>The one shape of every message: <c>Vso:Key = 'value' is invalid: fix.</c></summary>
    public static string Invalid(string key, object? value, string fix) =>
        string.Create(CultureInfo.InvariantCulture, $"Vso:{key} = '{value}' is invalid: {fix}.");

    /// <summary>
    /// The range a numeric or duration key accepts, in the words of its check (here, or TcpSettings.Validate for the
    /// Tcp:* keys it owns), so that a value that does not parse is answered as one out of range; null: no range.
    /// </summary>
    public static string? AcceptedRange(string key) => key switch
    {
        "Mtu" => "576 to 65521, such as 1500",
        "Tcp:Backlog" => "1 to 65535",
        "Tcp:ReceiveBufferSize" => "2048 to 1073741824 bytes",
        "Tcp:MemoryLimit" => "0 (no limit) or at least 65536 bytes",
        "Tcp:MaxHalfOpen" => "1 to 1048576",
        "Tcp:DelayedAck" => "0 to 200 ms",
        "Tcp:MinRto" => "a positive time",
        "Tcp:MaxRto" => "at least Tcp:MinRto",
        "Tcp:InitialRto" => "between Tcp:MinRto and Tcp:MaxRto",
        "Pinning:BlockSize" => "a power of two from 1024 to 1048576, such as 4096",
        "Pinning:SlabSize" => "a multiple of 4096 from 4096 to 67108864 bytes, such as 262144 (raised to Pinning:BlockSize when smaller)",
        "Pinning:MaxBytes" => "at least 1048576 bytes, or no value for no bound",
        "MaxWriteBufferSize" => "at least 65536 bytes, well above a typical flush (2097152 by default)",
        "MaxReadBufferSize" => "at least 16384 bytes (1048576 by default)",
        "AfXdp:Queue" => "a receive queue of the interface, 0 to 65535 (`ethtool -l DEV` lists them)",
        "AfXdp:RingSize" => "a power of two from 64 to 32768, such as 2048",
        "AfXdp:Queues" => "1 or more, AfXdp:Queue + AfXdp:Queues - 1 being a receive queue of the interface",
        "Engines" => "0 (automatic) or 1 to 64 engine threads",
        "BusyPollMicroseconds" => "0 (off) to 1000 microseconds",
        _ => null,
    };

    /// <summary>A remark after the list of an enum key's values.</summary>
    public static string EnumNote(string key) => "";

    public static bool TryParseCidr(string? text, out IPAddress address, out int prefix)
    {
        address = IPAddress.None;
        prefix = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var parts = text.Trim().Split('/');
        if (parts.Length != 2 || !TryParseAddress(parts[0], out address) || address.Equals(IPAddress.Any))
        {
            return false;
        }

        return int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out prefix) && prefix is >= 1 and <= 32;
    }

    public static bool TryParseAddress(string text, out IPAddress address) =>
        IPAddress.TryParse(text.Trim(), out address!) && address.AddressFamily == AddressFamily.InterNetwork;

    private static bool TryParseMac(string text, out PhysicalAddress mac) =>
        PhysicalAddress.TryParse(text.Trim(), out mac!) && mac.GetAddressBytes().Length == 6;
}
