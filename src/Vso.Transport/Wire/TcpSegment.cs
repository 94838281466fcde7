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
        TcpHeaderWriter.AddPseudoHeader(ref sum, source, destination, segment.Length);
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

/// <summary>Emits TCP headers. The checksum is a separate step because the payload may be gathered from pinned memory at send time.</summary>
internal static class TcpHeaderWriter
{
    /// <summary>
    /// Writes the fixed header and <paramref name="options"/> (laid out by <see cref="TcpOptions.EncodedLength"/>),
    /// with checksum and urgent pointer 0. Returns the header length, 20 + options.EncodedLength.
    /// </summary>
    public static int Write(
        Span<byte> destination,
        ushort sourcePort,
        ushort destinationPort,
        uint sequence,
        uint acknowledgment,
        TcpFlags flags,
        ushort window,
        in TcpOptions options)
    {
        int headerLength = TcpSegment.MinHeaderLength + options.EncodedLength;
        var header = destination[..headerLength];
        BinaryPrimitives.WriteUInt16BigEndian(header, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], destinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(header[4..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(header[8..], acknowledgment);
        header[12] = (byte)((headerLength / 4) << 4);
        header[13] = (byte)flags;
        BinaryPrimitives.WriteUInt16BigEndian(header[14..], window);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], 0); // checksum and urgent pointer
        options.Write(header[TcpSegment.MinHeaderLength..]);
        return headerLength;
    }

    /// <summary>
    /// Fills the checksum of the header at <paramref name="tcpHeader"/>[..headerLength]. <paramref name="payloadSum"/> holds the
    /// payload's bytes, summed from payload offset 0 (in as many pieces as the caller likes); the header length is a
    /// multiple of 4, so the payload starts at an even offset and the sums combine directly.
    /// </summary>
    public static void FinishChecksum(
        Span<byte> tcpHeader,
        int headerLength,
        Ipv4Address source,
        Ipv4Address destination,
        int payloadLength,
        ChecksumAccumulator payloadSum)
    {
        System.Diagnostics.Debug.Assert(payloadSum.Length == payloadLength, "payload sum covers a different length than payloadLength");
        var header = tcpHeader[..headerLength];
        BinaryPrimitives.WriteUInt16BigEndian(header[16..], 0);
        var sum = default(ChecksumAccumulator);
        AddPseudoHeader(ref sum, source, destination, headerLength + payloadLength);
        sum.Add(header);
        sum.Add(in payloadSum);
        BinaryPrimitives.WriteUInt16BigEndian(header[16..], sum.Finish());
    }

    /// <summary>
    /// For a super-segment that the kernel segments (CHECKSUM_PARTIAL): the checksum field holds the folded pseudo-header
    /// sum, not complemented, for the whole TCP length; the kernel adjusts it per segment and adds header and payload.
    /// </summary>
    public static void WritePseudoHeaderChecksum(Span<byte> tcpHeader, Ipv4Address source, Ipv4Address destination, int tcpLength)
    {
        var sum = default(ChecksumAccumulator);
        AddPseudoHeader(ref sum, source, destination, tcpLength);
        BinaryPrimitives.WriteUInt16BigEndian(tcpHeader[16..], (ushort)~sum.Finish());
    }

    /// <summary>RFC 9293 §3.1 pseudo-header: source, destination, zero, PTCL = 6, TCP length (header + data).</summary>
    internal static void AddPseudoHeader(ref ChecksumAccumulator sum, Ipv4Address source, Ipv4Address destination, int tcpLength)
    {
        sum.AddUInt32(source.Value);
        sum.AddUInt32(destination.Value);
        sum.AddUInt16((ushort)IpProtocol.Tcp);
        sum.AddUInt16((ushort)tcpLength);
    }
}
