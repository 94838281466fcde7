namespace Vso.Transport.Links;

/// <summary>
/// xoshiro256** (Blackman and Vigna, 2018), seeded through SplitMix64. A mutable value type owned by
/// one fault stream: deterministic for a seed, no shared state, no allocation. Not for cryptography.
/// </summary>
internal struct Xoshiro256StarStar
{
    private ulong _s0;
    private ulong _s1;
    private ulong _s2;
    private ulong _s3;

    public Xoshiro256StarStar(ulong seed)
    {
        // SplitMix64 expands the seed so that any seed, zero included, gives a non-zero state.
        var x = seed;
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    /// <summary>
    /// An independent generator for one numbered stream of a seed: the seed and the stream number are
    /// mixed (SplitMix64 finalizer) so that streams do not share state words.
    /// </summary>
    public static Xoshiro256StarStar ForStream(ulong seed, ulong stream)
    {
        var x = seed ^ (stream * 0xD1B5_4A32_D192_ED03UL);
        return new Xoshiro256StarStar(SplitMix64(ref x));
    }

    public ulong NextUInt64()
    {
        var result = RotateLeft(_s1 * 5, 7) * 9;
        var t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 bits of precision.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>True with probability <paramref name="probability"/>; draws one number either way.</summary>
    public bool Chance(double probability) => NextDouble() < probability;

    /// <summary>Uniform in [0, <paramref name="maxExclusive"/>), by multiply-shift (Lemire); bias below 2^-32.</summary>
    public long NextInt64(long maxExclusive)
    {
        var product = (UInt128)NextUInt64() * (ulong)maxExclusive;
        return (long)(ulong)(product >> 64);
    }

    private static ulong SplitMix64(ref ulong x)
    {
        x += 0x9E37_79B9_7F4A_7C15UL;
        var z = x;
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return z ^ (z >> 31);
    }

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}
