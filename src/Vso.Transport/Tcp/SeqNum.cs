using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Vso.Transport.Tcp;

/// <summary>
/// A TCP sequence number: a point in the modulo-2^32 sequence space (RFC 9293 §3.4). Comparisons are modular:
/// a is "less than" b when b lies in the half of the space that follows a, so they stay right across wraparound.
/// Adding a length moves forward; subtracting two sequence numbers gives a signed distance. A bare uint at run
/// time: no boxing, every member inlined, and no implicit conversion to uint, so a plain (wrong) unsigned
/// comparison cannot creep in.
/// </summary>
[DebuggerDisplay("{Value}")]
internal readonly struct SeqNum : IEquatable<SeqNum>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SeqNum(uint value) => Value = value;

    /// <summary>The number as it travels in the header.</summary>
    public uint Value { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static explicit operator SeqNum(uint value) => new(value);

    /// <summary>The sequence number <paramref name="length"/> octets further on (modulo 2^32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SeqNum operator +(SeqNum a, int length) => new(a.Value + (uint)length);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SeqNum operator +(SeqNum a, uint length) => new(a.Value + length);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SeqNum operator -(SeqNum a, int length) => new(a.Value - (uint)length);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SeqNum operator ++(SeqNum a) => new(a.Value + 1);

    /// <summary>a - b as a signed distance: positive when a lies after b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int operator -(SeqNum a, SeqNum b) => (int)(a.Value - b.Value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool operator ==(SeqNum a, SeqNum b) => a.Value == b.Value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool operator !=(SeqNum a, SeqNum b) => a.Value != b.Value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool operator <(SeqNum a, SeqNum b) => (int)(a.Value - b.Value) < 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool operator <=(SeqNum a, SeqNum b) => (int)(a.Value - b.Value) <= 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool operator >(SeqNum a, SeqNum b) => (int)(a.Value - b.Value) > 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool operator >=(SeqNum a, SeqNum b) => (int)(a.Value - b.Value) >= 0;

    /// <summary>The later of two sequence numbers (modulo 2^32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SeqNum Max(SeqNum a, SeqNum b) => a > b ? a : b;

    /// <summary>The earlier of two sequence numbers (modulo 2^32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static SeqNum Min(SeqNum a, SeqNum b) => a < b ? a : b;

    /// <summary>low &lt;= this &lt; high, modulo 2^32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool InWindow(SeqNum low, SeqNum high) => low <= this && this < high;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Equals(SeqNum other) => Value == other.Value;

    public override bool Equals(object? obj) => obj is SeqNum other && Value == other.Value;

    public override int GetHashCode() => (int)Value;

    public override string ToString() => Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
