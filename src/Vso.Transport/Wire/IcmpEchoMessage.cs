using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>A checked view of an ICMP message, interpreted as echo request or reply (RFC 792, "Echo or Echo Reply Message").</summary>
internal readonly ref struct IcmpEchoMessage
{
    public const byte EchoReply = 0;
    public const byte EchoRequest = 8;
    public const int HeaderLength = 8;

    private readonly ReadOnlySpan<byte> _message;

    private IcmpEchoMessage(ReadOnlySpan<byte> message) => _message = message;

    /// <summary>
    /// <see cref="WireStatus.Truncated"/> below 8 bytes, <see cref="WireStatus.BadChecksum"/> when the checksum over the
    /// whole message fails, <see cref="WireStatus.Unsupported"/> for types other than echo and echo reply (result still
    /// populated: Type and Code are meaningful, so the caller can count by type).
    /// </summary>
    public static WireStatus TryParse(ReadOnlySpan<byte> message, out IcmpEchoMessage result)
    {
        result = default;
        if (message.Length < HeaderLength)
        {
            return WireStatus.Truncated;
        }

        // RFC 792: "the 16-bit one's complement of the one's complement sum of the ICMP message starting with the ICMP Type".
        if (InternetChecksum.Compute(message) != 0)
        {
            return WireStatus.BadChecksum;
        }

        result = new IcmpEchoMessage(message);
        return message[0] is EchoRequest or EchoReply ? WireStatus.Ok : WireStatus.Unsupported;
    }

    public byte Type => _message[0];

    public byte Code => _message[1];

    public ushort Identifier => BinaryPrimitives.ReadUInt16BigEndian(_message[4..]);

    public ushort SequenceNumber => BinaryPrimitives.ReadUInt16BigEndian(_message[6..]);

    public ReadOnlySpan<byte> Data => _message[HeaderLength..];

    /// <summary>Writes an echo (type 8) or echo reply (type 0) with code 0 and checksum; returns 8 + data length.</summary>
    public static int WriteEcho(Span<byte> destination, byte type, ushort identifier, ushort sequence, ReadOnlySpan<byte> data)
    {
        int length = HeaderLength + data.Length;
        var message = destination[..length];
        message[0] = type;
        message[1] = 0;
        message[2] = 0;
        message[3] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(message[4..], identifier);
        BinaryPrimitives.WriteUInt16BigEndian(message[6..], sequence);

        // An echo reply usually copies the request's data; copying first and summing after keeps overlapping spans right.
        data.CopyTo(message[HeaderLength..]);
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], InternetChecksum.Compute(message));
        return length;
    }
}
