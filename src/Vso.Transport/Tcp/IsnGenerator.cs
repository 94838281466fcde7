using System.Buffers.Binary;
using System.Security.Cryptography;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// Initial sequence numbers by RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
/// where M is a timer ticking every 4 microseconds and F a keyed hash (HMAC-SHA256 here) of the
/// connection identifier, so sequence numbers of unrelated connections cannot be predicted.
/// </summary>
internal sealed class IsnGenerator
{
    private readonly byte[] _key;

    public IsnGenerator(ReadOnlySpan<byte> key)
    {
        _key = key.IsEmpty ? RandomNumberGenerator.GetBytes(32) : key.ToArray();
    }

    public uint Next(long nowMicroseconds, Ipv4Address localAddress, ushort localPort, Ipv4Address remoteAddress, ushort remotePort)
        => (uint)(nowMicroseconds / 4) + Hash(localAddress, localPort, remoteAddress, remotePort, 0);

    /// <summary>A per-connection offset for TCP timestamps (RFC 7323 §5.4), from the same keyed hash.</summary>
    public uint TimestampOffset(Ipv4Address localAddress, ushort localPort, Ipv4Address remoteAddress, ushort remotePort)
        => Hash(localAddress, localPort, remoteAddress, remotePort, 1);

    private uint Hash(Ipv4Address localAddress, ushort localPort, Ipv4Address remoteAddress, ushort remotePort, byte purpose)
    {
        Span<byte> id = stackalloc byte[13];
        localAddress.Write(id);
        BinaryPrimitives.WriteUInt16BigEndian(id[4..], localPort);
        remoteAddress.Write(id[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(id[10..], remotePort);
        id[12] = purpose;
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(_key, id, mac);
        return BinaryPrimitives.ReadUInt32LittleEndian(mac);
    }
}
