using System.Buffers.Binary;
using System.Numerics;

namespace Vso.Transport.Tcp;

/// <summary>
/// SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed pseudo-random function for short inputs, the one
/// Linux uses for SYN cookies and port offsets. Much cheaper than HMAC-SHA256 for the 12-16 bytes of a
/// connection identifier, and allocation-free. Not a MAC for long messages, not a general hash.
/// </summary>
internal static class SipHash
{
    public static ulong Hash(in SipHashKey key, ReadOnlySpan<byte> data)
    {
        var v0 = key.K0 ^ 0x736F_6D65_7073_6575UL;
        var v1 = key.K1 ^ 0x646F_7261_6E64_6F6DUL;
        var v2 = key.K0 ^ 0x6C79_6765_6E65_7261UL;
        var v3 = key.K1 ^ 0x7465_6462_7974_6573UL;

        var whole = data.Length & ~7;
        for (var i = 0; i < whole; i += 8)
        {
            var m = BinaryPrimitives.ReadUInt64LittleEndian(data[i..]);
            v3 ^= m;
            Round(ref v0, ref v1, ref v2, ref v3);
            Round(ref v0, ref v1, ref v2, ref v3);
            v0 ^= m;
        }

        // The last word carries the remaining bytes and the length modulo 256 in its top byte.
        var last = (ulong)data.Length << 56;
        var tail = data[whole..];
        for (var i = 0; i < tail.Length; i++)
        {
            last |= (ulong)tail[i] << (8 * i);
        }

        v3 ^= last;
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        v0 ^= last;

        v2 ^= 0xFF;
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        return v0 ^ v1 ^ v2 ^ v3;
    }

    private static void Round(ref ulong v0, ref ulong v1, ref ulong v2, ref ulong v3)
    {
        v0 += v1;
        v1 = BitOperations.RotateLeft(v1, 13);
        v1 ^= v0;
        v0 = BitOperations.RotateLeft(v0, 32);
        v2 += v3;
        v3 = BitOperations.RotateLeft(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = BitOperations.RotateLeft(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = BitOperations.RotateLeft(v1, 17);
        v1 ^= v2;
        v2 = BitOperations.RotateLeft(v2, 32);
    }
}
