using System.Buffers.Binary;

namespace Vso.Transport.Tcp;

/// <summary>A 128-bit SipHash key (two little-endian 64-bit words).</summary>
internal readonly record struct SipHashKey(ulong K0, ulong K1)
{
    public const int Size = 16;

    public static SipHashKey Read(ReadOnlySpan<byte> key) => key.Length < Size
        ? throw new ArgumentException($"A SipHash key is {Size} bytes.", nameof(key))
        : new(BinaryPrimitives.ReadUInt64LittleEndian(key), BinaryPrimitives.ReadUInt64LittleEndian(key[8..]));
}
