using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>A checked view of an ARP packet (RFC 826) for Ethernet hardware and IPv4 protocol addresses only.</summary>
internal readonly ref struct ArpPacket
{
    public const int Length = 28;

    private const ushort HardwareEthernet = 1; // IANA hardware type 1, "Ethernet (10Mb)"
    private const ushort ProtocolIpv4 = (ushort)EtherType.Ipv4;

    private readonly ReadOnlySpan<byte> _packet;

    private ArpPacket(ReadOnlySpan<byte> packet) => _packet = packet;

    /// <summary>
    /// <see cref="WireStatus.Truncated"/> below 28 bytes; <see cref="WireStatus.Unsupported"/> for other hardware or
    /// protocol types or address lengths (result left default), and for opcodes other than request and reply
    /// (result still populated, so the caller can log it). Trailing Ethernet padding is ignored.
    /// </summary>
    public static WireStatus TryParse(ReadOnlySpan<byte> packet, out ArpPacket result)
    {
        result = default;
        if (packet.Length < Length)
        {
            return WireStatus.Truncated;
        }

        if (BinaryPrimitives.ReadUInt16BigEndian(packet) != HardwareEthernet
            || BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) != ProtocolIpv4
            || packet[4] != 6
            || packet[5] != 4)
        {
            return WireStatus.Unsupported;
        }

        result = new ArpPacket(packet[..Length]);
        var op = result.Operation;
        return op is ArpOperation.Request or ArpOperation.Reply ? WireStatus.Ok : WireStatus.Unsupported;
    }

    public ArpOperation Operation => (ArpOperation)BinaryPrimitives.ReadUInt16BigEndian(_packet[6..]);

    public MacAddress SenderHardware => MacAddress.Read(_packet[8..]);

    public Ipv4Address SenderProtocol => Ipv4Address.Read(_packet[14..]);

    public MacAddress TargetHardware => MacAddress.Read(_packet[18..]);

    public Ipv4Address TargetProtocol => Ipv4Address.Read(_packet[24..]);

    public static int Write(Span<byte> destination, ArpOperation op, MacAddress senderHw, Ipv4Address senderIp, MacAddress targetHw, Ipv4Address targetIp)
    {
        var packet = destination[..Length];
        BinaryPrimitives.WriteUInt16BigEndian(packet, HardwareEthernet);
        BinaryPrimitives.WriteUInt16BigEndian(packet[2..], ProtocolIpv4);
        packet[4] = 6;
        packet[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(packet[6..], (ushort)op);
        senderHw.Write(packet[8..]);
        senderIp.Write(packet[14..]);
        targetHw.Write(packet[18..]);
        targetIp.Write(packet[24..]);
        return Length;
    }
}
