using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// The PROXY protocol parser against HAProxy's proxy-protocol.txt: v1 (§2.1) TCP4, TCP6 and UNKNOWN, v2 (§2.2) PROXY and
/// LOCAL with TLVs and CRC32c (§2.2.3), every prefix of a header incomplete, and every deviation refused.
/// </summary>
public sealed class ProxyProtocolParserTests
{
    private static readonly byte[] Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    [Fact]
    public void V1_TCP4_gives_the_end_points_and_leaves_the_data_after_the_CRLF()
    {
        var data = Encoding.ASCII.GetBytes("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(data, VsoProxyProtocol.V1, out var header, out _));
        Assert.Equal(1, header.Version);
        Assert.True(header.IsProxied);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.168.0.1"), 56324), header.Source);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.168.0.11"), 443), header.Destination);
        Assert.Equal("GET / HTTP/1.1\r\n", Encoding.ASCII.GetString(data, header.Length, data.Length - header.Length));
        Assert.Equal(0, header.TlvLength);
    }

    [Fact]
    public void V1_TCP6_and_the_longest_lines_are_accepted()
    {
        var tcp6 = "PROXY TCP6 2001:db8::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 0\r\n";
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(Encoding.ASCII.GetBytes(tcp6), VsoProxyProtocol.Any, out var header, out _));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8::1"), 65535), header.Source);
        Assert.Equal(0, header.Destination!.Port);

        // §2.1: the worst case is 107 characters, CRLF included.
        var longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        Assert.Equal(ProxyProtocolParser.MaxV1Length, longest.Length);
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(Encoding.ASCII.GetBytes(longest), VsoProxyProtocol.V1, out header, out _));
        Assert.Equal(107, header.Length);
    }

    [Theory]
    [InlineData("PROXY UNKNOWN\r\n")]
    [InlineData("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n")]
    [InlineData("PROXY UNKNOWN whatever the sender put here\r\n")]
    public void V1_UNKNOWN_keeps_the_connection_end_points(string line)
    {
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(Encoding.ASCII.GetBytes(line + "x"), VsoProxyProtocol.V1, out var header, out _));
        Assert.False(header.IsProxied);
        Assert.Null(header.Source);
        Assert.Equal(line.Length, header.Length);
    }

    [Theory]
    [InlineData("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")]
    [InlineData("PROXY UNKNOWN\r\n")]
    public void Every_prefix_of_a_v1_header_is_incomplete(string line)
    {
        var data = Encoding.ASCII.GetBytes(line);
        for (var n = 0; n < data.Length; n++)
        {
            Assert.Equal(ProxyHeaderStatus.Incomplete, ProxyProtocolParser.TryParse(data.AsSpan(0, n), VsoProxyProtocol.Any, out _, out _));
        }
    }

    [Theory]
    [InlineData("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n")]          // leading zero (octal confusion)
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n")]          // leading zero in a port
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n")]       // port out of range
    [InlineData("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n")]         // octet out of range
    [InlineData("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n")]             // three octets
    [InlineData("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n")]         // five octets
    [InlineData("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n")]          // two spaces
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n")]          // trailing space
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")]             // a field short
    [InlineData("PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n")]       // IPv6 under TCP4
    [InlineData("PROXY TCP6 1.2.3.4 2001:db8::2 1 2\r\n")]       // IPv4 under TCP6
    [InlineData("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n")]           // unknown protocol
    [InlineData("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n")]           // case matters
    [InlineData("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")]             // LF alone
    [InlineData("PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n")]          // CR alone inside
    [InlineData("PROXY UNKNOWNX\r\n")]                           // not UNKNOWN
    public void Malformed_v1_lines_are_refused(string line)
    {
        Assert.Equal(ProxyHeaderStatus.Invalid, ProxyProtocolParser.TryParse(Encoding.ASCII.GetBytes(line), VsoProxyProtocol.V1, out _, out var rejection));
        Assert.Equal(ProxyRejection.Malformed, rejection);
    }

    [Fact]
    public void A_v1_line_without_CRLF_in_107_bytes_is_oversized()
    {
        var line = Encoding.ASCII.GetBytes("PROXY UNKNOWN " + new string('a', 120));
        Assert.Equal(ProxyHeaderStatus.Invalid, ProxyProtocolParser.TryParse(line, VsoProxyProtocol.V1, out _, out var rejection));
        Assert.Equal(ProxyRejection.Oversized, rejection);

        // 106 bytes without CRLF may still end with one.
        Assert.Equal(ProxyHeaderStatus.Incomplete, ProxyProtocolParser.TryParse(line.AsSpan(0, 106), VsoProxyProtocol.V1, out _, out _));
    }

    [Theory]
    [InlineData(VsoProxyProtocol.V1, "GET / HTTP/1.1\r\n")]
    [InlineData(VsoProxyProtocol.Any, "GET / HTTP/1.1\r\n")]
    [InlineData(VsoProxyProtocol.V2, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")]
    [InlineData(VsoProxyProtocol.V1, "\r\n\r\n\0\r\nQUIT\n")]
    [InlineData(VsoProxyProtocol.V1, "PROXYTCP4")]
    public void A_connection_without_an_accepted_header_is_refused_as_missing(VsoProxyProtocol mode, string text)
    {
        Assert.Equal(ProxyHeaderStatus.Invalid, ProxyProtocolParser.TryParse(Encoding.Latin1.GetBytes(text), mode, out _, out var rejection));
        Assert.Equal(ProxyRejection.Missing, rejection);
    }

    [Fact]
    public void V2_PROXY_TCP4_with_TLVs()
    {
        var tlvs = Tlv(0x01, "h2"u8).Concat(Tlv(0x02, "example.com"u8)).Concat(Tlv(0xE0, [1, 2, 3])).ToArray();
        var data = V2(0x21, 0x11, Ipv4Block("203.0.113.7", "198.51.100.1", 56324, 443), tlvs).Concat("GET"u8.ToArray()).ToArray();
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(data, VsoProxyProtocol.V2, out var header, out _));
        Assert.Equal(2, header.Version);
        Assert.True(header.IsProxied);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 56324), header.Source);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 443), header.Destination);
        Assert.Equal(data.Length - 3, header.Length);
        Assert.Equal(16 + 12, header.TlvOffset);
        Assert.Equal(tlvs, data.AsSpan(header.TlvOffset, header.TlvLength).ToArray());

        // The feature splits them in order.
        var feature = new ProxyProtocolFeature(header, null, data.AsSpan(header.TlvOffset, header.TlvLength));
        Assert.Equal([0x01, 0x02, 0xE0], feature.Tlvs.Select(t => t.Key));
        Assert.Equal("example.com", Encoding.ASCII.GetString(feature.Tlvs[1].Value.Span));
    }

    [Fact]
    public void V2_PROXY_TCP6()
    {
        var block = IPAddress.Parse("2001:db8::7").GetAddressBytes().Concat(IPAddress.Parse("2001:db8::1").GetAddressBytes()).Concat(Ports(1000, 80)).ToArray();
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(V2(0x21, 0x21, block, []), VsoProxyProtocol.Any, out var header, out _));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8::7"), 1000), header.Source);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8::1"), 80), header.Destination);
    }

    [Theory]
    [InlineData(0x20, 0x00, 0)]    // LOCAL, UNSPEC, no address (a health check)
    [InlineData(0x20, 0x11, 12)]   // LOCAL with addresses: ignored (§2.2)
    [InlineData(0x21, 0x00, 0)]    // PROXY, UNSPEC
    [InlineData(0x21, 0x12, 12)]   // PROXY over UDP: not ours, the real end points
    [InlineData(0x21, 0x31, 216)]  // PROXY over AF_UNIX
    public void V2_LOCAL_and_families_not_used_keep_the_connection_end_points(byte versionCommand, byte familyProtocol, int addressLength)
    {
        var data = V2(versionCommand, familyProtocol, new byte[addressLength], Tlv(0x05, "id-1"u8));
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(data, VsoProxyProtocol.V2, out var header, out _));
        Assert.False(header.IsProxied);
        Assert.Null(header.Source);
        Assert.Equal(data.Length, header.Length);
        Assert.Equal(7, header.TlvLength);
    }

    [Fact]
    public void Every_prefix_of_a_v2_header_is_incomplete()
    {
        var data = V2(0x21, 0x11, Ipv4Block("10.0.0.1", "10.0.0.2", 1, 2), Tlv(0x02, "a"u8));
        for (var n = 0; n < data.Length; n++)
        {
            Assert.Equal(ProxyHeaderStatus.Incomplete, ProxyProtocolParser.TryParse(data.AsSpan(0, n), VsoProxyProtocol.V2, out _, out _));
        }
    }

    [Fact]
    public void A_v2_header_longer_than_the_limit_is_refused_from_its_first_16_bytes()
    {
        var fixedPart = V2(0x21, 0x11, [], [])[..16];
        BinaryPrimitives.WriteUInt16BigEndian(fixedPart.AsSpan(14), ProxyProtocolParser.MaxHeaderLength - 16 + 1);
        Assert.Equal(ProxyHeaderStatus.Invalid, ProxyProtocolParser.TryParse(fixedPart, VsoProxyProtocol.V2, out _, out var rejection));
        Assert.Equal(ProxyRejection.Oversized, rejection);

        // At the limit it is accepted (padding in a NOOP TLV).
        var padding = new byte[ProxyProtocolParser.MaxHeaderLength - 16 - 12 - 3];
        var atLimit = V2(0x21, 0x11, Ipv4Block("10.0.0.1", "10.0.0.2", 1, 2), Tlv(0x04, padding));
        Assert.Equal(ProxyProtocolParser.MaxHeaderLength, atLimit.Length);
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(atLimit, VsoProxyProtocol.V2, out _, out _));
    }

    [Theory]
    [InlineData(0x11, 0x11, 12)]   // version 1 in the binary form
    [InlineData(0x31, 0x11, 12)]   // version 3
    [InlineData(0x22, 0x11, 12)]   // command 2
    [InlineData(0x21, 0x41, 12)]   // family 4
    [InlineData(0x21, 0x13, 12)]   // protocol 3
    [InlineData(0x21, 0x11, 8)]    // TCP4 with too short an address block
    [InlineData(0x21, 0x21, 12)]   // TCP6 with an IPv4-sized block
    public void Malformed_v2_fixed_parts_are_refused(byte versionCommand, byte familyProtocol, int addressLength)
    {
        Assert.Equal(ProxyHeaderStatus.Invalid, ProxyProtocolParser.TryParse(V2(versionCommand, familyProtocol, new byte[addressLength], []), VsoProxyProtocol.Any, out _, out var rejection));
        Assert.Equal(ProxyRejection.Malformed, rejection);
    }

    [Fact]
    public void Malformed_v2_TLVs_are_refused()
    {
        var block = Ipv4Block("10.0.0.1", "10.0.0.2", 1, 2);
        var overrun = Tlv(0x02, "abc"u8);
        BinaryPrimitives.WriteUInt16BigEndian(overrun.AsSpan(1), 10);
        byte[][] cases = [overrun, [0x02, 0x00], Tlv(0x03, [1, 2, 3]), [.. Tlv(0x01, "h2"u8), 0x04]];
        foreach (var tlvs in cases)
        {
            Assert.Equal(ProxyHeaderStatus.Invalid, ProxyProtocolParser.TryParse(V2(0x21, 0x11, block, tlvs), VsoProxyProtocol.V2, out _, out var rejection));
            Assert.Equal(ProxyRejection.Malformed, rejection);
        }
    }

    [Fact]
    public void A_v2_CRC32c_TLV_is_checked()
    {
        Assert.Equal(0xE3069283u, Crc32C("123456789"u8));

        var data = V2(0x21, 0x11, Ipv4Block("10.0.0.1", "10.0.0.2", 1, 2), Tlv(0x03, [0, 0, 0, 0]).Concat(Tlv(0x02, "x"u8)).ToArray());
        var at = 16 + 12 + 3;
        BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(at), Crc32C(data));
        Assert.Equal(ProxyHeaderStatus.Complete, ProxyProtocolParser.TryParse(data, VsoProxyProtocol.V2, out _, out _));

        data[^1] ^= 1;
        Assert.Equal(ProxyHeaderStatus.Invalid, ProxyProtocolParser.TryParse(data, VsoProxyProtocol.V2, out _, out var rejection));
        Assert.Equal(ProxyRejection.Malformed, rejection);
    }

    /// <summary>Garbage never throws and never passes for a header unless it is one.</summary>
    [Fact]
    public void Garbage_is_refused_without_throwing()
    {
        var random = new Random(1234);
        var buffer = new byte[200];
        var complete = 0;
        for (var i = 0; i < 200_000; i++)
        {
            var length = random.Next(buffer.Length + 1);
            random.NextBytes(buffer.AsSpan(0, length));

            // Half of them start with a signature, so the parser's later fields are reached too.
            if (i % 2 == 0 && length >= 16)
            {
                Signature.CopyTo(buffer, 0);
                buffer[12] = (byte)(0x20 | (buffer[12] & 1));
                buffer[13] = (byte)random.Next(0x33);
                BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(14), (ushort)random.Next(length - 15));
            }
            else if (i % 4 == 1 && length >= 6)
            {
                "PROXY "u8.CopyTo(buffer);
            }

            var status = ProxyProtocolParser.TryParse(buffer.AsSpan(0, length), VsoProxyProtocol.Any, out var header, out var rejection);
            if (status == ProxyHeaderStatus.Complete)
            {
                complete++;
                Assert.InRange(header.Length, 15, length);
                Assert.Equal(ProxyRejection.None, rejection);
            }
            else if (status == ProxyHeaderStatus.Invalid)
            {
                Assert.NotEqual(ProxyRejection.None, rejection);
            }
        }

        // Random TLV areas rarely parse; headers with an empty TLV area do.
        Assert.InRange(complete, 1, 100_000);
    }

    private static byte[] V2(byte versionCommand, byte familyProtocol, byte[] addresses, byte[] tlvs)
    {
        var data = new byte[16 + addresses.Length + tlvs.Length];
        Signature.CopyTo(data, 0);
        data[12] = versionCommand;
        data[13] = familyProtocol;
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(14), (ushort)(addresses.Length + tlvs.Length));
        addresses.CopyTo(data, 16);
        tlvs.CopyTo(data, 16 + addresses.Length);
        return data;
    }

    internal static byte[] Ipv4Block(string source, string destination, ushort sourcePort, ushort destinationPort) =>
        [.. IPAddress.Parse(source).GetAddressBytes(), .. IPAddress.Parse(destination).GetAddressBytes(), .. Ports(sourcePort, destinationPort)];

    private static byte[] Ports(ushort source, ushort destination)
    {
        var ports = new byte[4];
        BinaryPrimitives.WriteUInt16BigEndian(ports, source);
        BinaryPrimitives.WriteUInt16BigEndian(ports.AsSpan(2), destination);
        return ports;
    }

    internal static byte[] Tlv(byte type, ReadOnlySpan<byte> value)
    {
        var tlv = new byte[3 + value.Length];
        tlv[0] = type;
        BinaryPrimitives.WriteUInt16BigEndian(tlv.AsSpan(1), (ushort)value.Length);
        value.CopyTo(tlv.AsSpan(3));
        return tlv;
    }

    /// <summary>CRC32c bit by bit (RFC 4960 Appendix B: reflected polynomial 0x82F63B78), independent of the parser's.</summary>
    private static uint Crc32C(ReadOnlySpan<byte> data)
    {
        var crc = uint.MaxValue;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
            }
        }

        return ~crc;
    }
}
