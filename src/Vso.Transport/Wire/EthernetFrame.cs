using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>
/// A checked view of an Ethernet II frame (IEEE 802.3 §3.2, DIX framing): destination, source, EtherType, payload.
/// The FCS is not present: links hand frames over without it.
/// </summary>
internal readonly ref struct EthernetFrame
{
    public const int HeaderLength = 14;

    private readonly ReadOnlySpan<byte> _frame;

    private EthernetFrame(ReadOnlySpan<byte> frame) => _frame = frame;

    /// <summary>
    /// Any frame of at least 14 bytes parses. The EtherType is not checked here: values below 0x0600 are
    /// 802.3 length fields, not types, and the demultiplexer reports those as <see cref="WireStatus.UnsupportedEtherType"/>.
    /// </summary>
    public static WireStatus TryParse(ReadOnlySpan<byte> frame, out EthernetFrame result)
    {
        if (frame.Length < HeaderLength)
        {
            result = default;
            return WireStatus.Truncated;
        }

        result = new EthernetFrame(frame);
        return WireStatus.Ok;
    }

    public MacAddress Destination => MacAddress.Read(_frame);

    public MacAddress Source => MacAddress.Read(_frame[6..]);

    /// <summary>The raw EtherType; may be any value, not only the named ones.</summary>
    public EtherType EtherType => (EtherType)BinaryPrimitives.ReadUInt16BigEndian(_frame[12..]);

    /// <summary>Everything after the header, including any padding to the 60-byte minimum; the IPv4 parser trims that.</summary>
    public ReadOnlySpan<byte> Payload => _frame[HeaderLength..];

    public static int WriteHeader(Span<byte> destination, MacAddress dst, MacAddress src, EtherType type)
    {
        var header = destination[..HeaderLength];
        dst.Write(header);
        src.Write(header[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(header[12..], (ushort)type);
        return HeaderLength;
    }
}
