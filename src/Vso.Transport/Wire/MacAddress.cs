using System.Buffers.Binary;
using System.Net.NetworkInformation;

namespace Vso.Transport.Wire;

/// <summary>A 48-bit Ethernet hardware address, stored in the low 48 bits in wire order.</summary>
internal readonly record struct MacAddress(ulong Value)
{
    // The public API speaks PhysicalAddress; see Ipv4Address's conversion.
    public static implicit operator PhysicalAddress(MacAddress address) => address.ToPhysicalAddress();

    public static readonly MacAddress Broadcast = new(0xFFFF_FFFF_FFFFUL);
    public static readonly MacAddress Zero = new(0);

    public static MacAddress Read(ReadOnlySpan<byte> source) =>
        new(((ulong)BinaryPrimitives.ReadUInt16BigEndian(source) << 32) | BinaryPrimitives.ReadUInt32BigEndian(source[2..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)(Value >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(destination[2..], (uint)Value);
    }

    public bool IsBroadcast => Value == Broadcast.Value;

    /// <summary>Group bit set: broadcast or multicast (IEEE 802.3 §3.2.3).</summary>
    public bool IsMulticast => (Value & 0x0100_0000_0000UL) != 0;

    public static MacAddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(':', '-');
        if (parts.Length != 6)
        {
            throw new FormatException($"'{text}' is not a MAC address; expected six hex octets such as 02:00:00:00:00:01.");
        }

        ulong value = 0;
        foreach (var part in parts)
        {
            value = (value << 8) | byte.Parse(part, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
        }

        return new MacAddress(value);
    }

    public static MacAddress FromPhysicalAddress(PhysicalAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        var bytes = address.GetAddressBytes();
        if (bytes.Length != 6)
        {
            throw new ArgumentException($"'{address}' is not a 48-bit Ethernet address.", nameof(address));
        }

        return Read(bytes);
    }

    public PhysicalAddress ToPhysicalAddress()
    {
        var bytes = new byte[6];
        Write(bytes);
        return new PhysicalAddress(bytes);
    }

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[6];
        Write(b);
        return $"{b[0]:x2}:{b[1]:x2}:{b[2]:x2}:{b[3]:x2}:{b[4]:x2}:{b[5]:x2}";
    }
}
