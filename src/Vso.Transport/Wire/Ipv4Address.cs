using System.Buffers.Binary;
using System.Net;

namespace Vso.Transport.Wire;

/// <summary>An IPv4 address as a host-order 32-bit value (198.18.0.2 is 0xC6120002).</summary>
internal readonly record struct Ipv4Address(uint Value)
{
    // The public API speaks IPAddress; this keeps code that holds an Ipv4Address (tests, the stack) readable at that seam.
    public static implicit operator IPAddress(Ipv4Address address) => address.ToIPAddress();

    public static readonly Ipv4Address Any = new(0);
    public static readonly Ipv4Address Broadcast = new(0xFFFF_FFFF);

    public static Ipv4Address Read(ReadOnlySpan<byte> source) => new(BinaryPrimitives.ReadUInt32BigEndian(source));

    public void Write(Span<byte> destination) => BinaryPrimitives.WriteUInt32BigEndian(destination, Value);

    public static Ipv4Address Parse(string text)
    {
        if (!IPAddress.TryParse(text, out var ip) || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
        {
            throw new FormatException($"'{text}' is not an IPv4 address; expected dotted quad such as 198.18.0.2.");
        }

        return FromIPAddress(ip);
    }

    public static Ipv4Address FromIPAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        Span<byte> b = stackalloc byte[4];
        if (!address.TryWriteBytes(b, out var written) || written != 4)
        {
            throw new ArgumentException($"'{address}' is not an IPv4 address.", nameof(address));
        }

        return Read(b);
    }

    public IPAddress ToIPAddress()
    {
        Span<byte> b = stackalloc byte[4];
        Write(b);
        return new IPAddress(b);
    }

    public bool InSubnet(Ipv4Address network, int prefixLength) =>
        prefixLength == 0 || (Value >> (32 - prefixLength)) == (network.Value >> (32 - prefixLength));

    public override string ToString() => $"{Value >> 24}.{(Value >> 16) & 0xFF}.{(Value >> 8) & 0xFF}.{Value & 0xFF}";
}
