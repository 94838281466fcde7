using System.Runtime.CompilerServices;

namespace Vso.Transport.Tcp;

/// <summary>
/// Modulo-2^32 comparisons of sequence numbers (RFC 9293 §3.4): a is "less than" b when b lies in the
/// half of the number space that follows a, so comparisons stay right across wraparound.
/// </summary>
internal static class SequenceNumber
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Lt(uint a, uint b) => (int)(a - b) < 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Le(uint a, uint b) => (int)(a - b) <= 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Gt(uint a, uint b) => (int)(a - b) > 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Ge(uint a, uint b) => (int)(a - b) >= 0;

    /// <summary>a - b as a signed distance.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Diff(uint a, uint b) => (int)(a - b);

    /// <summary>low &lt;= x &lt; high, modulo 2^32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool InWindow(uint x, uint low, uint high) => Le(low, x) && Lt(x, high);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Max(uint a, uint b) => Gt(a, b) ? a : b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Min(uint a, uint b) => Lt(a, b) ? a : b;
}
