using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>
/// A TCP header as values (RFC 9293 §3.1): ports, sequence and acknowledgment numbers, control bits, window and options.
/// What the stack sends is built as one of these and written by <see cref="Emit"/>; what it receives can be read back
/// into one by <see cref="TryParse"/>. The checksum is not a field: it covers the payload, which may be gathered from
/// pinned memory only at send time, so it is filled afterwards by <see cref="TcpChecksum"/>. The urgent pointer is
/// always 0 (the stack sends no urgent data, RFC 9293 §3.8.5) and the data offset follows from the options.
/// </summary>
internal struct TcpRepr
{
    public ushort SourcePort;
    public ushort DestinationPort;
    public uint SequenceNumber;

    /// <summary>Meaningful only with <see cref="TcpFlags.Ack"/> (RFC 9293 §3.1); written as given either way.</summary>
    public uint AcknowledgmentNumber;

    public TcpFlags Flags;

    /// <summary>The window field as sent: already shifted right by the window scale, except in a SYN (RFC 7323 §2.2).</summary>
    public ushort Window;

    /// <summary>Start from <see cref="TcpOptions.None"/>: a default <see cref="TcpOptions"/> means window scale 0, not absent.</summary>
    public TcpOptions Options;

    /// <summary>A header without options, every field zero: set the fields that differ.</summary>
    public static TcpRepr Empty => new() { Options = TcpOptions.None };

    /// <summary>Bytes <see cref="Emit"/> writes: 20 + the options' encoded length, a multiple of 4, at most 60.</summary>
    public readonly int HeaderLength => TcpSegment.MinHeaderLength + Options.EncodedLength;

    /// <summary>
    /// Writes the header, options included (laid out by <see cref="TcpOptions.EncodedLength"/>), into the first
    /// <see cref="HeaderLength"/> bytes of <paramref name="destination"/>, with checksum and urgent pointer 0.
    /// Returns <see cref="HeaderLength"/>.
    /// </summary>
    public readonly int Emit(Span<byte> destination)
    {
        int headerLength = HeaderLength;
        var header = destination[..headerLength];
        BinaryPrimitives.WriteUInt16BigEndian(header, SourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], DestinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(header[4..], SequenceNumber);
        BinaryPrimitives.WriteUInt32BigEndian(header[8..], AcknowledgmentNumber);
        header[12] = (byte)((headerLength / 4) << 4); // data offset in 32-bit words; the reserved bits stay 0
        header[13] = (byte)Flags;
        BinaryPrimitives.WriteUInt16BigEndian(header[14..], Window);
        BinaryPrimitives.WriteUInt32BigEndian(header[16..], 0); // checksum and urgent pointer
        Options.Write(header[TcpSegment.MinHeaderLength..]);
        return headerLength;
    }

    /// <summary>
    /// Checks <paramref name="segment"/> (the whole IPv4 payload) as <see cref="TcpSegment.TryParse"/> does, checksum
    /// included, and reads its header into <paramref name="header"/>; <paramref name="payload"/> is the data after it.
    /// </summary>
    public static WireStatus TryParse(ReadOnlySpan<byte> segment, Ipv4Address source, Ipv4Address destination, out TcpRepr header, out ReadOnlySpan<byte> payload)
    {
        var status = TcpSegment.TryParse(segment, source, destination, out var parsed);
        if (status != WireStatus.Ok)
        {
            header = Empty;
            payload = default;
            return status;
        }

        header = From(parsed);
        payload = parsed.Payload;
        return WireStatus.Ok;
    }

    /// <summary>The header of an already checked segment, as values.</summary>
    public static TcpRepr From(in TcpSegment segment) => new()
    {
        SourcePort = segment.SourcePort,
        DestinationPort = segment.DestinationPort,
        SequenceNumber = segment.SequenceNumber,
        AcknowledgmentNumber = segment.AcknowledgmentNumber,
        Flags = segment.Flags,
        Window = segment.Window,
        Options = segment.Options,
    };
}
