using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Numerics;

namespace Vso.Transport.Kestrel;

/// <summary>Where parsing a PROXY protocol header stands.</summary>
internal enum ProxyHeaderStatus : byte
{
    /// <summary>Every byte so far fits a header; more are needed.</summary>
    Incomplete,

    /// <summary>A whole, valid header: <see cref="ProxyHeader.Length"/> bytes.</summary>
    Complete,

    /// <summary>Not a header this listener accepts; the connection must be closed (proxy-protocol.txt §2).</summary>
    Invalid,
}

/// <summary>Why a connection's PROXY protocol header was refused (the <c>reason</c> tag of the rejection counter).</summary>
internal enum ProxyRejection : byte
{
    None,

    /// <summary>The first bytes are not a header of an accepted version (a client speaking to the port directly).</summary>
    Missing,

    /// <summary>A header's signature, but its fields break the specification.</summary>
    Malformed,

    /// <summary>Longer than <see cref="ProxyProtocolParser.MaxHeaderLength"/> (v2) or no CRLF in 107 bytes (v1).</summary>
    Oversized,

    /// <summary>The connection ended before the header did.</summary>
    Truncated,

    /// <summary>The header did not arrive within Vso:ProxyProtocolTimeout.</summary>
    Timeout,

    /// <summary>The TCP peer is not in Vso:ProxyProtocolTrustedAddresses.</summary>
    Untrusted,
}

/// <summary>A parsed header: where its fields sit in the received bytes (nothing is copied while parsing).</summary>
internal readonly record struct ProxyHeader(
    int Version,
    bool IsProxied,
    IPEndPoint? Source,
    IPEndPoint? Destination,
    int Length,
    int TlvOffset,
    int TlvLength);

/// <summary>
/// The PROXY protocol of HAProxy's proxy-protocol.txt: the text header of version 1 (§2.1) and the binary header of
/// version 2 (§2.2) with its TLVs (§2.2.1-2.2.8), parsed from the first bytes of a connection. Strict, as the
/// specification asks of receivers: any deviation is invalid, and a receiver configured for the protocol never guesses
/// that a header is absent (§2). Allocates only the end points it returns.
/// </summary>
internal static class ProxyProtocolParser
{
    /// <summary>The longest header accepted (v2: 16 fixed bytes, addresses and TLVs); HAProxy's own limit is its buffer.</summary>
    public const int MaxHeaderLength = 4096;

    /// <summary>§2.1: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two IPv6 addresses and ports).</summary>
    public const int MaxV1Length = 107;

    private const int V2FixedLength = 16;
    private const byte TypeCrc32C = 0x03;

    /// <summary>§2.2: the v2 signature.</summary>
    private static ReadOnlySpan<byte> V2Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    private static ReadOnlySpan<byte> V1Prefix => "PROXY "u8;

    /// <summary>Parses the header at the start of <paramref name="data"/>, the bytes received so far.</summary>
    public static ProxyHeaderStatus TryParse(ReadOnlySpan<byte> data, VsoProxyProtocol mode, out ProxyHeader header, out ProxyRejection rejection)
    {
        header = default;
        rejection = ProxyRejection.None;
        var v2 = mode is VsoProxyProtocol.V2 or VsoProxyProtocol.Any && StartsLike(data, V2Signature);
        var v1 = mode is VsoProxyProtocol.V1 or VsoProxyProtocol.Any && StartsLike(data, V1Prefix);
        if (v2 && data.Length >= V2Signature.Length)
        {
            return ParseV2(data, out header, out rejection);
        }

        if (v1 && data.Length >= V1Prefix.Length)
        {
            return ParseV1(data, out header, out rejection);
        }

        if (v1 || v2)
        {
            return ProxyHeaderStatus.Incomplete;
        }

        rejection = ProxyRejection.Missing;
        return ProxyHeaderStatus.Invalid;
    }

    /// <summary>§2.1: "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF, or "PROXY UNKNOWN" ... CRLF.</summary>
    private static ProxyHeaderStatus ParseV1(ReadOnlySpan<byte> data, out ProxyHeader header, out ProxyRejection rejection)
    {
        header = default;
        rejection = ProxyRejection.None;
        var window = data[..Math.Min(data.Length, MaxV1Length)];
        var lf = window.IndexOf((byte)'\n');
        if (lf < 0)
        {
            if (window.Length == MaxV1Length)
            {
                // §2.1: no CRLF in the first 107 characters: the line is invalid.
                rejection = ProxyRejection.Oversized;
                return ProxyHeaderStatus.Invalid;
            }

            // A CR may be followed by LF later, but nothing else: a lone CR inside the line is invalid.
            var cr = window.IndexOf((byte)'\r');
            if (cr >= 0 && cr != window.Length - 1)
            {
                rejection = ProxyRejection.Malformed;
                return ProxyHeaderStatus.Invalid;
            }

            return ProxyHeaderStatus.Incomplete;
        }

        // §2.1: a single LF (or CR) must not end the line.
        if (lf == 0 || window[lf - 1] != '\r')
        {
            rejection = ProxyRejection.Malformed;
            return ProxyHeaderStatus.Invalid;
        }

        var line = window[V1Prefix.Length..(lf - 1)];
        var length = lf + 1;
        if (line.StartsWith("UNKNOWN"u8))
        {
            // §2.1: whatever follows UNKNOWN up to the CRLF is ignored; the connection's own end points stand.
            if (line.Length > 7 && line[7] != ' ')
            {
                rejection = ProxyRejection.Malformed;
                return ProxyHeaderStatus.Invalid;
            }

            header = new ProxyHeader(1, false, null, null, length, 0, 0);
            return ProxyHeaderStatus.Complete;
        }

        AddressFamily family;
        if (line.StartsWith("TCP4 "u8))
        {
            family = AddressFamily.InterNetwork;
        }
        else if (line.StartsWith("TCP6 "u8))
        {
            family = AddressFamily.InterNetworkV6;
        }
        else
        {
            rejection = ProxyRejection.Malformed;
            return ProxyHeaderStatus.Invalid;
        }

        var rest = line[5..];
        if (!NextField(ref rest, out var sourceText) || !NextField(ref rest, out var destinationText) || !NextField(ref rest, out var sourcePortText)
            || rest.IsEmpty || rest.Contains((byte)' ')
            || !TryParseV1Address(sourceText, family, out var source) || !TryParseV1Address(destinationText, family, out var destination)
            || !TryParsePort(sourcePortText, out var sourcePort) || !TryParsePort(rest, out var destinationPort))
        {
            rejection = ProxyRejection.Malformed;
            return ProxyHeaderStatus.Invalid;
        }

        header = new ProxyHeader(1, true, new IPEndPoint(source, sourcePort), new IPEndPoint(destination, destinationPort), length, 0, 0);
        return ProxyHeaderStatus.Complete;
    }

    /// <summary>§2.2: signature, version and command, family and protocol, length, addresses, TLVs.</summary>
    private static ProxyHeaderStatus ParseV2(ReadOnlySpan<byte> data, out ProxyHeader header, out ProxyRejection rejection)
    {
        header = default;
        rejection = ProxyRejection.None;
        if (data.Length < V2FixedLength)
        {
            return ProxyHeaderStatus.Incomplete;
        }

        var versionCommand = data[12];
        var familyProtocol = data[13];
        var addressLength = BinaryPrimitives.ReadUInt16BigEndian(data[14..]);

        // Version 2 only; commands LOCAL (0) and PROXY (1) only; families 0-3 and protocols 0-2 only.
        var command = versionCommand & 0x0F;
        var family = familyProtocol >> 4;
        var protocol = familyProtocol & 0x0F;
        if (versionCommand >> 4 != 2 || command > 1 || family > 3 || protocol > 2)
        {
            rejection = ProxyRejection.Malformed;
            return ProxyHeaderStatus.Invalid;
        }

        var length = V2FixedLength + addressLength;
        if (length > MaxHeaderLength)
        {
            rejection = ProxyRejection.Oversized;
            return ProxyHeaderStatus.Invalid;
        }

        if (data.Length < length)
        {
            // §2.2: the address block is parsed only once it is whole.
            return ProxyHeaderStatus.Incomplete;
        }

        var block = data[V2FixedLength..length];
        var addressSize = family switch
        {
            1 => 12,   // AF_INET: 2 x 4 bytes and 2 ports
            2 => 36,   // AF_INET6: 2 x 16 bytes and 2 ports
            3 => 216,  // AF_UNIX: 2 x 108 bytes
            _ => 0,    // AF_UNSPEC: no addresses
        };
        if (block.Length < addressSize)
        {
            rejection = ProxyRejection.Malformed;
            return ProxyHeaderStatus.Invalid;
        }

        var tlvs = block[addressSize..];
        if (!TlvsAreWellFormed(tlvs, out var crcAt) || (crcAt >= 0 && !Crc32CMatches(data[..length], V2FixedLength + addressSize + crcAt)))
        {
            rejection = ProxyRejection.Malformed;
            return ProxyHeaderStatus.Invalid;
        }

        IPEndPoint? source = null;
        IPEndPoint? destination = null;

        // PROXY over TCP (STREAM) on IPv4 or IPv6 carries the client's end points. LOCAL (health checks), UNSPEC, UDP
        // and AF_UNIX fall back to the connection's own end points, as §2.2 allows a receiver that does not use them.
        var proxied = command == 1 && protocol == 1 && family is 1 or 2;
        if (proxied)
        {
            var size = family == 1 ? 4 : 16;
            var sourceAddress = new IPAddress(block[..size]);
            var destinationAddress = new IPAddress(block.Slice(size, size));
            var ports = block[(2 * size)..];
            source = new IPEndPoint(sourceAddress, BinaryPrimitives.ReadUInt16BigEndian(ports));
            destination = new IPEndPoint(destinationAddress, BinaryPrimitives.ReadUInt16BigEndian(ports[2..]));
        }

        header = new ProxyHeader(2, proxied, source, destination, length, V2FixedLength + addressSize, tlvs.Length);
        return ProxyHeaderStatus.Complete;
    }

    /// <summary>§2.2: each TLV is a type byte, a 16-bit big-endian length and that many bytes; together they fill the rest exactly.</summary>
    private static bool TlvsAreWellFormed(ReadOnlySpan<byte> tlvs, out int crcAt)
    {
        crcAt = -1;
        var at = 0;
        while (at < tlvs.Length)
        {
            if (tlvs.Length - at < 3)
            {
                return false;
            }

            var type = tlvs[at];
            var length = BinaryPrimitives.ReadUInt16BigEndian(tlvs[(at + 1)..]);
            if (tlvs.Length - at - 3 < length)
            {
                return false;
            }

            if (type == TypeCrc32C)
            {
                // §2.2.3: a 32-bit value, at most once.
                if (length != 4 || crcAt >= 0)
                {
                    return false;
                }

                crcAt = at + 3;
            }

            at += 3 + length;
        }

        return true;
    }

    /// <summary>§2.2.3: the CRC32c (RFC 4960 Appendix B) of the whole header with the checksum field zeroed.</summary>
    private static bool Crc32CMatches(ReadOnlySpan<byte> header, int checksumAt)
    {
        var expected = BinaryPrimitives.ReadUInt32BigEndian(header[checksumAt..]);
        var crc = uint.MaxValue;
        for (var i = 0; i < header.Length; i++)
        {
            var b = i >= checksumAt && i < checksumAt + 4 ? (byte)0 : header[i];
            crc = BitOperations.Crc32C(crc, b);
        }

        return ~crc == expected;
    }

    /// <summary>Whether <paramref name="data"/> is a prefix of <paramref name="signature"/> or starts with all of it.</summary>
    private static bool StartsLike(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        var n = Math.Min(data.Length, signature.Length);
        return data[..n].SequenceEqual(signature[..n]);
    }

    /// <summary>The text up to the next single space; false for an empty field.</summary>
    private static bool NextField(ref ReadOnlySpan<byte> rest, out ReadOnlySpan<byte> field)
    {
        var space = rest.IndexOf((byte)' ');
        if (space <= 0)
        {
            field = default;
            return false;
        }

        field = rest[..space];
        rest = rest[(space + 1)..];
        return true;
    }

    /// <summary>§2.1: IPv4 as exactly four decimal numbers 0-255 without leading zeroes; IPv6 in its usual text form.</summary>
    private static bool TryParseV1Address(ReadOnlySpan<byte> text, AddressFamily family, out IPAddress address)
    {
        address = IPAddress.None;
        if (family == AddressFamily.InterNetwork)
        {
            Span<byte> octets = stackalloc byte[4];
            for (var i = 0; i < 4; i++)
            {
                var dot = text.IndexOf((byte)'.');
                var part = i < 3 ? (dot < 0 ? default : text[..dot]) : text;
                if (!TryParseDecimal(part, 255, out var value))
                {
                    return false;
                }

                octets[i] = (byte)value;
                text = i < 3 ? text[(dot + 1)..] : default;
            }

            address = new IPAddress(octets);
            return true;
        }

        if (text.Length > 39)
        {
            return false;
        }

        Span<char> chars = stackalloc char[39];
        for (var i = 0; i < text.Length; i++)
        {
            var c = (char)text[i];
            if (!char.IsAsciiHexDigit(c) && c is not ':' and not '.')
            {
                return false;
            }

            chars[i] = c;
        }

        return IPAddress.TryParse(chars[..text.Length], out address!) && address.AddressFamily == AddressFamily.InterNetworkV6;
    }

    private static bool TryParsePort(ReadOnlySpan<byte> text, out int port) => TryParseDecimal(text, 65535, out port);

    /// <summary>1 to 5 decimal digits up to <paramref name="max"/>, with no leading zero (§2.1: no octal confusion).</summary>
    private static bool TryParseDecimal(ReadOnlySpan<byte> text, int max, out int value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 5 || (text.Length > 1 && text[0] == '0'))
        {
            return false;
        }

        foreach (var c in text)
        {
            if (c is < (byte)'0' or > (byte)'9')
            {
                return false;
            }

            value = (value * 10) + (c - '0');
        }

        return value <= max;
    }
}
