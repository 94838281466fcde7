using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>A checked view of a TCP segment (RFC 9293 §3.1) with its options already parsed.</summary>
internal readonly ref struct TcpSegment
{
    public const int MinHeaderLength = 20;

    private readonly ReadOnlySpan<byte> _segment;
    private readonly int _headerLength;
    private readonly TcpOptions _options;

    private TcpSegment(ReadOnlySpan<byte> segment, int headerLength, scoped in TcpOptions options)
    {
        _segment = segment;
        _headerLength = headerLength;
        _options = options;
    }

    /// <summary>
    /// <paramref name="segment"/> is the IPv4 payload, exactly delimited by the IPv4 total length. Checks, in order:
    /// room for the fixed header (<see cref="WireStatus.Truncated"/>), data offset at least 5 and within the segment
    /// (<see cref="WireStatus.BadHeaderLength"/>: the IP layer already fixed the length, so an offset past it is a lie, not a
    /// truncation), checksum over the pseudo-header (<see cref="WireStatus.BadChecksum"/>), options (<see cref="WireStatus.BadOption"/>).
    /// </summary>
    public static WireStatus TryParse(ReadOnlySpan<byte> segment, Ipv4Address source, Ipv4Address destination, out TcpSegment result)
    {
        result = default;
        if (segment.Length < MinHeaderLength)
        {
            return WireStatus.Truncated;
        }

        int headerLength = (segment[12] >> 4) * 4;
        if (headerLength < MinHeaderLength || headerLength > segment.Length)
        {
            return WireStatus.BadHeaderLength;
        }

        // RFC 9293 §3.1 "Checksum": pseudo-header (source, destination, zero, protocol, TCP length) plus the whole segment.
        var sum = default(ChecksumAccumulator);
        TcpChecksum.AddPseudoHeader(ref sum, source, destination, segment.Length);
        sum.Add(segment);
        if (sum.Finish() != 0)
        {
            return WireStatus.BadChecksum;
        }

        var status = TcpOptions.TryParse(segment[MinHeaderLength..headerLength], out var options);
        if (status != WireStatus.Ok)
        {
            return status;
        }

        result = new TcpSegment(segment, headerLength, options);
        return WireStatus.Ok;
    }

    public ushort SourcePort => BinaryPrimitives.ReadUInt16BigEndian(_segment);

    public ushort DestinationPort => BinaryPrimitives.ReadUInt16BigEndian(_segment[2..]);

    public uint SequenceNumber => BinaryPrimitives.ReadUInt32BigEndian(_segment[4..]);

    public uint AcknowledgmentNumber => BinaryPrimitives.ReadUInt32BigEndian(_segment[8..]);

    /// <summary>The eight control bits of byte 13. The former NS bit (RFC 3540, now historic per RFC 8311) is ignored.</summary>
    public TcpFlags Flags => (TcpFlags)_segment[13];

    public ushort Window => BinaryPrimitives.ReadUInt16BigEndian(_segment[14..]);

    public ushort Checksum => BinaryPrimitives.ReadUInt16BigEndian(_segment[16..]);

    public ushort UrgentPointer => BinaryPrimitives.ReadUInt16BigEndian(_segment[18..]);

    /// <summary>Data offset * 4.</summary>
    public int HeaderLength => _headerLength;

    public TcpOptions Options => _options;

    public ReadOnlySpan<byte> Payload => _segment[_headerLength..];
}
