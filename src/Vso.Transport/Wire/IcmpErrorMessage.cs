using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>
/// A checked view of an ICMP Destination Unreachable message (RFC 792, type 3) and the datagram it quotes: the
/// quoted IPv4 header and at least the first 8 bytes of its payload (RFC 792; RFC 1812 §4.3.2.3 allows more),
/// which for TCP are the ports and the sequence number (RFC 5927 §4). Parsing never throws: a message too short
/// for its quote, with a bad checksum or a quote that is not an IPv4 header, is refused with a status.
/// </summary>
internal readonly ref struct IcmpErrorMessage
{
    public const byte DestinationUnreachable = 3;

    /// <summary>Type, code, checksum, and the 4-byte "unused" word (the next-hop MTU for code 4, RFC 1191 §4).</summary>
    public const int HeaderLength = 8;

    /// <summary>Quoted transport bytes every ICMP error carries (RFC 792): enough for TCP's ports and sequence number.</summary>
    public const int QuotedTransportLength = 8;

    private readonly ReadOnlySpan<byte> _message;
    private readonly int _quotedHeaderLength;

    private IcmpErrorMessage(ReadOnlySpan<byte> message, int quotedHeaderLength)
    {
        _message = message;
        _quotedHeaderLength = quotedHeaderLength;
    }

    /// <summary>
    /// Validates, in this order: room for the ICMP header and a minimal quote (<see cref="WireStatus.Truncated"/>),
    /// the checksum over the whole message (<see cref="WireStatus.BadChecksum"/>), type 3
    /// (<see cref="WireStatus.Unsupported"/>), a quoted IPv4 version (<see cref="WireStatus.BadVersion"/>), a quoted
    /// IHL of at least 5 (<see cref="WireStatus.BadHeaderLength"/>) and room for the quoted header with its 8 transport
    /// bytes (<see cref="WireStatus.Truncated"/>). The quoted header's checksum is not checked: routers quote what they
    /// received, and the TCP check (RFC 5927 §4.1, the sequence number in flight) is the one that matters.
    /// </summary>
    public static WireStatus TryParse(ReadOnlySpan<byte> message, out IcmpErrorMessage result)
    {
        result = default;
        if (message.Length < HeaderLength + Ipv4Packet.MinHeaderLength + QuotedTransportLength)
        {
            return WireStatus.Truncated;
        }

        if (InternetChecksum.Compute(message) != 0)
        {
            return WireStatus.BadChecksum;
        }

        if (message[0] != DestinationUnreachable)
        {
            return WireStatus.Unsupported;
        }

        var quote = message[HeaderLength..];
        if (quote[0] >> 4 != 4)
        {
            return WireStatus.BadVersion;
        }

        var quotedHeaderLength = (quote[0] & 0x0F) * 4;
        if (quotedHeaderLength < Ipv4Packet.MinHeaderLength)
        {
            return WireStatus.BadHeaderLength;
        }

        if (quote.Length < quotedHeaderLength + QuotedTransportLength)
        {
            return WireStatus.Truncated;
        }

        result = new IcmpErrorMessage(message, quotedHeaderLength);
        return WireStatus.Ok;
    }

    public byte Type => _message[0];

    /// <summary>RFC 792 / RFC 1122 §3.2.2.1: 0 net, 1 host, 2 protocol, 3 port unreachable, 4 fragmentation needed, ...</summary>
    public byte Code => _message[1];

    /// <summary>Code 4 only: the MTU of the next-hop network (RFC 1191 §4); 0 from routers older than RFC 1191.</summary>
    public ushort NextHopMtu => BinaryPrimitives.ReadUInt16BigEndian(_message[6..]);

    private ReadOnlySpan<byte> Quote => _message[HeaderLength..];

    /// <summary>The quoted datagram's source: ours, if we sent it.</summary>
    public Ipv4Address QuotedSource => Ipv4Address.Read(Quote[12..]);

    public Ipv4Address QuotedDestination => Ipv4Address.Read(Quote[16..]);

    public IpProtocol QuotedProtocol => (IpProtocol)Quote[9];

    /// <summary>The quoted datagram's total length field (what we sent, for the RFC 1191 §5 plateau estimate).</summary>
    public ushort QuotedTotalLength => BinaryPrimitives.ReadUInt16BigEndian(Quote[2..]);

    /// <summary>The first (at least 8) bytes of the quoted datagram's payload.</summary>
    public ReadOnlySpan<byte> QuotedTransport => Quote[_quotedHeaderLength..];

    /// <summary>For a TCP quote: the source port of the quoted segment (our port).</summary>
    public ushort QuotedSourcePort => BinaryPrimitives.ReadUInt16BigEndian(QuotedTransport);

    public ushort QuotedDestinationPort => BinaryPrimitives.ReadUInt16BigEndian(QuotedTransport[2..]);

    /// <summary>For a TCP quote: the sequence number of the quoted segment (bytes 4-7, RFC 9293 §3.1).</summary>
    public uint QuotedSequenceNumber => BinaryPrimitives.ReadUInt32BigEndian(QuotedTransport[4..]);

    /// <summary>Writes a Destination Unreachable with the given code, MTU word and quote, with its checksum; returns its length.</summary>
    public static int Write(Span<byte> destination, byte code, ushort nextHopMtu, ReadOnlySpan<byte> quote)
    {
        var length = HeaderLength + quote.Length;
        var message = destination[..length];
        message[0] = DestinationUnreachable;
        message[1] = code;
        message[2] = 0;
        message[3] = 0;
        message[4] = 0;
        message[5] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(message[6..], nextHopMtu);
        quote.CopyTo(message[HeaderLength..]);
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], InternetChecksum.Compute(message));
        return length;
    }
}
