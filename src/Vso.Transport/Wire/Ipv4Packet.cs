using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>A checked view of an IPv4 datagram (RFC 791 §3.1).</summary>
internal readonly ref struct Ipv4Packet
{
    public const int MinHeaderLength = 20;

    private const ushort FlagDontFragment = 0x4000;
    private const ushort FlagMoreFragments = 0x2000;
    private const ushort FragmentOffsetMask = 0x1FFF;

    // Trimmed to the total length, so trailing Ethernet padding never reaches the payload.
    private readonly ReadOnlySpan<byte> _packet;
    private readonly int _headerLength;

    private Ipv4Packet(ReadOnlySpan<byte> packet, int headerLength)
    {
        _packet = packet;
        _headerLength = headerLength;
    }

    /// <summary>
    /// Validates, in this order: room for a minimal header (<see cref="WireStatus.Truncated"/>), version 4
    /// (<see cref="WireStatus.BadVersion"/>), IHL at least 5 (<see cref="WireStatus.BadHeaderLength"/>), total length
    /// at least IHL * 4 (<see cref="WireStatus.BadLength"/>), total length within the buffer (<see cref="WireStatus.Truncated"/>),
    /// header checksum (<see cref="WireStatus.BadChecksum"/>), and finally rejects fragments (<see cref="WireStatus.Fragment"/>).
    /// </summary>
    public static WireStatus TryParse(ReadOnlySpan<byte> packet, out Ipv4Packet result)
    {
        result = default;
        if (packet.Length < MinHeaderLength)
        {
            return WireStatus.Truncated;
        }

        byte versionIhl = packet[0];
        if (versionIhl >> 4 != 4)
        {
            return WireStatus.BadVersion;
        }

        int headerLength = (versionIhl & 0x0F) * 4;
        if (headerLength < MinHeaderLength)
        {
            return WireStatus.BadHeaderLength;
        }

        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(packet[2..]);
        if (totalLength < headerLength)
        {
            return WireStatus.BadLength;
        }

        // The buffer may be longer (Ethernet pads frames to 60 bytes, IEEE 802.3 §3.2.8), never shorter.
        if (totalLength > packet.Length)
        {
            return WireStatus.Truncated;
        }

        // RFC 791 §3.1 "Header Checksum": the sum over the header including the checksum field is all ones.
        if (InternetChecksum.Compute(packet[..headerLength]) != 0)
        {
            return WireStatus.BadChecksum;
        }

        // No reassembly (RFC 791 §3.2) yet: a fragment's payload is not a whole transport segment.
        ushort flagsFragment = BinaryPrimitives.ReadUInt16BigEndian(packet[6..]);
        if ((flagsFragment & (FlagMoreFragments | FragmentOffsetMask)) != 0)
        {
            return WireStatus.Fragment;
        }

        result = new Ipv4Packet(packet[..totalLength], headerLength);
        return WireStatus.Ok;
    }

    public Ipv4Address Source => Ipv4Address.Read(_packet[12..]);

    public Ipv4Address Destination => Ipv4Address.Read(_packet[16..]);

    /// <summary>The raw protocol number; may be any value, not only the named ones.</summary>
    public IpProtocol Protocol => (IpProtocol)_packet[9];

    public byte Ttl => _packet[8];

    public ushort Identification => BinaryPrimitives.ReadUInt16BigEndian(_packet[4..]);

    /// <summary>IHL * 4; options between byte 20 and here are skipped, not interpreted.</summary>
    public int HeaderLength => _headerLength;

    public int TotalLength => _packet.Length;

    public bool DontFragment => (BinaryPrimitives.ReadUInt16BigEndian(_packet[6..]) & FlagDontFragment) != 0;

    /// <summary>The transport payload, TotalLength - HeaderLength bytes.</summary>
    public ReadOnlySpan<byte> Payload => _packet[_headerLength..];

    /// <summary>
    /// Writes a 20-byte header without options. DF is always set: the stack does its own MSS clamping and
    /// path MTU handling (RFC 1191) rather than letting routers fragment. Returns 20.
    /// </summary>
    public static int WriteHeader(
        Span<byte> destination,
        Ipv4Address source,
        Ipv4Address destinationAddress,
        IpProtocol protocol,
        int payloadLength,
        ushort identification,
        byte ttl = 64)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(payloadLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(payloadLength, ushort.MaxValue - MinHeaderLength);
        var header = destination[..MinHeaderLength];
        header[0] = 0x45; // version 4, IHL 5
        header[1] = 0;    // DSCP/ECN: best effort, not ECN-capable
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)(MinHeaderLength + payloadLength));
        BinaryPrimitives.WriteUInt16BigEndian(header[4..], identification);
        BinaryPrimitives.WriteUInt16BigEndian(header[6..], FlagDontFragment);
        header[8] = ttl;
        header[9] = (byte)protocol;
        header[10] = 0;
        header[11] = 0;
        source.Write(header[12..]);
        destinationAddress.Write(header[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(header[10..], InternetChecksum.Compute(header));
        return MinHeaderLength;
    }
}
