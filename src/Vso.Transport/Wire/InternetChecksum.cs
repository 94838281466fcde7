using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Vso.Transport.Wire;

/// <summary>
/// Running RFC 1071 internet checksum over data that may arrive in pieces of any length
/// (headers here, payload in gathered, pinned memory there).
/// </summary>
/// <remarks>
/// The sum is kept in "big-endian word" form: a 16-bit word is (byte at even offset) * 256 + (byte at odd offset).
/// Each piece is summed as if it started at an even offset; when it actually starts at an odd overall
/// offset, its folded sum is byte-swapped, which RFC 1071 §2(B) shows is the same as summing the bytes in
/// their true positions (swapping commutes with ones' complement addition).
/// </remarks>
internal struct ChecksumAccumulator
{
    // Holds sums of 16-bit values; a ulong cannot overflow for any realistic input (2^48 additions).
    private ulong _sum;
    private int _length;

    /// <summary>Bytes added so far; its parity decides where the next piece's bytes fall within a word.</summary>
    public readonly int Length => _length;

    public void Add(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        uint piece = InternetChecksum.PartialSum(data);
        if ((_length & 1) != 0)
        {
            piece = InternetChecksum.Swap16(piece);
        }

        _sum += piece;
        _length += data.Length;
    }

    /// <summary>Adds a 16-bit field in host order, as if its two bytes had been added big-endian. Pseudo-headers only: the current length must be even.</summary>
    public void AddUInt16(ushort value)
    {
        System.Diagnostics.Debug.Assert((_length & 1) == 0, "AddUInt16 at an odd offset");
        _sum += value;
        _length += 2;
    }

    /// <summary>Adds a 32-bit field in host order (e.g. an <see cref="Ipv4Address.Value"/>). The current length must be even.</summary>
    public void AddUInt32(uint value)
    {
        System.Diagnostics.Debug.Assert((_length & 1) == 0, "AddUInt32 at an odd offset");
        _sum += (value >> 16) + (value & 0xFFFF);
        _length += 4;
    }

    /// <summary>
    /// Appends everything another accumulator has summed, as if its bytes followed the bytes already added here.
    /// This lets a caller sum a payload on its own and the header writer combine it later
    /// (<see cref="TcpChecksum.Finish"/>).
    /// </summary>
    public void Add(in ChecksumAccumulator other)
    {
        uint piece = InternetChecksum.Fold(other._sum);
        if ((_length & 1) != 0)
        {
            piece = InternetChecksum.Swap16(piece);
        }

        _sum += piece;
        _length += other._length;
    }

    /// <summary>The ones' complement of the folded sum: the value to store in a checksum field, or 0 when verifying data that includes a correct checksum.</summary>
    public readonly ushort Finish() => (ushort)~InternetChecksum.Fold(_sum);
}

internal static class InternetChecksum
{
    /// <summary>RFC 1071 checksum of one contiguous buffer.</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => (ushort)~PartialSum(data);

    /// <summary>
    /// RFC 1624 eqn. 3 incremental update after a 16-bit field changed from <paramref name="oldValue"/> to
    /// <paramref name="newValue"/>: HC' = ~(~HC + ~m + m'). Eqn. 3 rather than eqn. 2 because eqn. 2 can produce
    /// 0x0000 where recomputation gives 0xFFFF (RFC 1624 §3).
    /// </summary>
    public static ushort Update(ushort checksum, ushort oldValue, ushort newValue)
    {
        uint sum = (uint)(ushort)~checksum + (ushort)~oldValue + newValue;
        return (ushort)~Fold(sum);
    }

    /// <summary>RFC 1624 eqn. 3 for a 32-bit field (an address or sequence number): both halves at once.</summary>
    public static ushort Update(ushort checksum, uint oldValue, uint newValue)
    {
        ulong sum = (ulong)(ushort)~checksum
            + (ushort)~(oldValue >> 16) + (ushort)~oldValue
            + (newValue >> 16) + (newValue & 0xFFFF);
        return (ushort)~Fold(sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Fold(ulong sum)
    {
        // End-around carry (RFC 1071 §4.1): fold until it fits in 16 bits.
        sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (uint)sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint Swap16(uint folded) => ((folded << 8) | (folded >> 8)) & 0xFFFF;

    /// <summary>
    /// Folded 16-bit ones' complement sum of <paramref name="data"/> as big-endian words, an odd trailing byte
    /// padded with a zero low byte (RFC 1071 §4.1).
    /// </summary>
    internal static uint PartialSum(ReadOnlySpan<byte> data)
    {
        // Sum native-order words; on little-endian hardware the folded result is the byte-swap of the
        // big-endian sum (RFC 1071 §2(B)), fixed once at the end instead of per word.
        ulong sum = 0;
        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length;
        nuint i = 0;

        if (Vector256.IsHardwareAccelerated && length >= 64)
        {
            var mask = Vector256.Create(0xFFFFu);
            while (length - i >= 32)
            {
                // Each lane gains at most 2 * 0xFFFF per step, so 32768 steps stay below 2^32.
                nuint blockEnd = i + Math.Min((length - i) & ~(nuint)31, (nuint)32 * 32768);
                var acc0 = Vector256<uint>.Zero;
                for (; i < blockEnd; i += 32)
                {
                    var v = Vector256.LoadUnsafe(ref start, i).AsUInt32();
                    acc0 += (v & mask) + (v >> 16);
                }

                var (lo, hi) = Vector256.Widen(acc0);
                sum += Vector256.Sum(lo + hi);
            }
        }

        if (Vector128.IsHardwareAccelerated && length - i >= 16)
        {
            var mask = Vector128.Create(0xFFFFu);
            while (length - i >= 16)
            {
                nuint blockEnd = i + Math.Min((length - i) & ~(nuint)15, (nuint)16 * 32768);
                var acc = Vector128<uint>.Zero;
                for (; i < blockEnd; i += 16)
                {
                    var v = Vector128.LoadUnsafe(ref start, i).AsUInt32();
                    acc += (v & mask) + (v >> 16);
                }

                var (lo, hi) = Vector128.Widen(acc);
                sum += Vector128.Sum(lo + hi);
            }
        }

        // Scalar tail: a 32-bit word is congruent to the sum of its 16-bit halves modulo 0xFFFF (2^16 ≡ 1).
        for (; length - i >= 4; i += 4)
        {
            sum += Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref start, i));
        }

        if (length - i >= 2)
        {
            sum += Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref start, i));
            i += 2;
        }

        uint folded;
        if (BitConverter.IsLittleEndian)
        {
            if (i < length)
            {
                // Odd trailing byte at an even offset: the first (high) byte of a big-endian word,
                // which is the low byte of a little-endian one.
                sum += Unsafe.Add(ref start, i);
            }

            folded = Swap16(Fold(sum));
        }
        else
        {
            if (i < length)
            {
                sum += (uint)Unsafe.Add(ref start, i) << 8;
            }

            folded = Fold(sum);
        }

        return folded;
    }
}
