namespace Vso.Transport.Wire;

/// <summary>
/// Outcome of parsing one header. Network input never throws: every parser returns one of these,
/// and the caller counts non-<see cref="Ok"/> results in <see cref="WireCounters"/> before dropping.
/// </summary>
internal enum WireStatus : byte
{
    Ok,
    /// <summary>The buffer ends before the header (or the length the header claims) does.</summary>
    Truncated,
    /// <summary>A length field contradicts another length field (e.g. IPv4 total length below its header length).</summary>
    BadLength,
    BadChecksum,
    BadVersion,
    /// <summary>IPv4 IHL or TCP data offset below the minimum, or past the end of the datagram.</summary>
    BadHeaderLength,
    /// <summary>A TCP option with an invalid length, or one that runs past the header.</summary>
    BadOption,
    /// <summary>An IPv4 fragment; reassembly is not implemented, so fragments are dropped.</summary>
    Fragment,
    UnsupportedEtherType,
    UnsupportedProtocol,
    BadAddress,
    /// <summary>Well-formed but not something this stack handles (ARP for non-Ethernet/IPv4, ICMP types other than echo).</summary>
    Unsupported,
}

internal static class WireStatusInfo
{
    /// <summary>Number of <see cref="WireStatus"/> values, for arrays indexed by status.</summary>
    public const int Count = 12;
}

/// <summary>The layer that dropped a packet, for <see cref="WireCounters"/>.</summary>
internal enum WireLayer : byte
{
    Ethernet,
    Ipv4,
    Arp,
    Icmp,
    Tcp,
}

internal static class WireLayerInfo
{
    /// <summary>Number of <see cref="WireLayer"/> values, for arrays indexed by layer.</summary>
    public const int Count = 5;
}

/// <summary>EtherType values this stack understands (IEEE 802.3 / IANA). Parsed values may be any ushort.</summary>
internal enum EtherType : ushort
{
    Ipv4 = 0x0800,
    Arp = 0x0806,
}

/// <summary>IANA protocol numbers carried in the IPv4 Protocol field (RFC 791 §3.1).</summary>
internal enum IpProtocol : byte
{
    Icmp = 1,
    Tcp = 6,
    Udp = 17,
}

/// <summary>TCP control bits, byte 13 of the header (RFC 9293 §3.1; ECE/CWR from RFC 3168 §6.1).</summary>
[Flags]
internal enum TcpFlags : byte
{
    None = 0,
    Fin = 1,
    Syn = 2,
    Rst = 4,
    Psh = 8,
    Ack = 16,
    Urg = 32,
    Ece = 64,
    Cwr = 128,
}

/// <summary>ARP opcodes (RFC 826; IANA "ARP operation codes").</summary>
internal enum ArpOperation : ushort
{
    Request = 1,
    Reply = 2,
}
