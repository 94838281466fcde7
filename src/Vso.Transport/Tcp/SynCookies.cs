using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Vso.Transport.Tcp;

/// <summary>
/// SYN cookies (RFC 4987 §3.6), laid out as Linux does (net/ipv4/syncookies.c): when the listen queue is
/// full the listener answers a SYN without keeping state, and the initial sequence number it sends
/// carries everything needed to rebuild the connection from the peer's final ACK:
/// <code>
/// ISN = H0(4-tuple) + peer ISN + (minute counter &lt;&lt; 24) + (H1(4-tuple, minute, index) mod 2^22) * 4 + index
/// </code>
/// H0 and H1 are SipHash-2-4 under two secret keys. The top 8 bits give the minute the cookie was made
/// (a cookie from the current or the previous minute is accepted, RFC 4987 §3.6 "limited lifetime"),
/// the low 2 bits index <see cref="MssTable"/> and the 22 between authenticate the tuple, the minute and
/// the index. Linux adds the index to the hash instead ((H1 + index) mod 2^24), so a cookie one off
/// still decodes, to a neighbouring MSS; here any changed bit fails the check. A forger who does not
/// know the secret passes with probability 2^-22 per guess, as with Linux's 4/2^24 (twice that just
/// after a rotation, when two secrets are accepted).
/// <para>
/// The options a cookie cannot carry (window scale, SACK-permitted, ECN) ride in the low
/// <see cref="TimestampOptionBits"/> bits of our TSval when the peer offered timestamps (RFC 7323): the
/// peer echoes it in TSecr of its ACK. Without timestamps those options are lost, so the SYN-ACK of a
/// cookie must not offer window scale or SACK then (Linux clears them, tcp_conn_request).
/// </para>
/// Engine-thread only; allocation-free after construction.
/// </summary>
internal sealed class SynCookies
{
    /// <summary>Bytes of a secret: two SipHash keys, one for H0 and one for H1.</summary>
    public const int SecretSize = 2 * SipHashKey.Size;

    /// <summary>The counter ticks once a minute (Linux: jiffies / (60 * HZ)).</summary>
    public const long CounterPeriodMicroseconds = 60_000_000;

    /// <summary>Counter values accepted: the current one and the previous one (Linux MAX_SYNCOOKIE_AGE).</summary>
    public const int MaxAgeInPeriods = 2;

    /// <summary>Low bits of the TSval that carry the options: 4 window scale, 1 SACK, 1 ECN.</summary>
    public const int TimestampOptionBits = 6;

    /// <summary>The window-scale nibble that means "the peer sent no window scale option".</summary>
    public const uint NoWindowScale = 0xF;

    private const int CounterShift = 24;
    private const uint CounterMask = uint.MaxValue >> CounterShift;
    private const int IndexBits = 2;
    private const uint IndexMask = (1u << IndexBits) - 1;
    private const uint MacMask = ((1u << CounterShift) - 1) & ~IndexMask;
    private const uint WindowScaleMask = 0xF;
    private const uint SackBit = 1u << 4;
    private const uint EcnBit = 1u << 5;
    private const uint TimestampOptionMask = (1u << TimestampOptionBits) - 1;
    private const int MaxWindowScale = 14; // RFC 7323 §2.3

    private CookieSecret _current;
    private CookieSecret _previous;

    // The counter value at which _current replaced _previous; _previous is only trusted for cookies
    // made at or before it, and only while such cookies can still be young enough.
    private long _rotatedAtCounter;
    private bool _hasPrevious;

    /// <param name="secret"><see cref="SecretSize"/> bytes, or empty for a random secret.</param>
    public SynCookies(ReadOnlySpan<byte> secret)
    {
        _current = CookieSecret.From(secret);
    }

    /// <summary>
    /// The MSS values a cookie can carry (Linux msstab): 536 (the RFC 9293 §3.7.1 default), 1300
    /// (tunnels), 1440 (PPPoE and similar), 1460 (Ethernet). A peer's MSS is rounded down to one of them.
    /// </summary>
    public static ReadOnlySpan<ushort> MssTable => [536, 1300, 1440, 1460];

    /// <summary>
    /// Installs a new secret. Cookies made under the old one stay valid for their normal lifetime
    /// (the old secret is kept as the previous one); a secret two rotations old is forgotten.
    /// </summary>
    public void RotateSecret(ReadOnlySpan<byte> secret, long nowMicroseconds)
    {
        _previous = _current;
        _current = CookieSecret.From(secret);
        _rotatedAtCounter = Counter(nowMicroseconds);
        _hasPrevious = true;
    }

    /// <summary>
    /// The ISN for our SYN-ACK to a SYN with sequence number <paramref name="peerIsn"/> and MSS option
    /// <paramref name="peerMss"/> (536 when absent, RFC 9293 §3.7.1); <paramref name="encodedMss"/> is the
    /// MSS the connection will use once the cookie returns.
    /// </summary>
    public uint CreateIsn(in ConnectionId id, uint peerIsn, long nowMicroseconds, int peerMss, out int encodedMss)
    {
        var table = MssTable;
        var index = table.Length - 1;
        while (index > 0 && peerMss < table[index])
        {
            index--;
        }

        encodedMss = table[index];
        var counter = (uint)Counter(nowMicroseconds);
        return Compose(_current, id, peerIsn, counter, (uint)index);
    }

    /// <summary>
    /// Checks the ACK that completes a cookie handshake: <paramref name="peerIsn"/> is SEG.SEQ - 1 (the
    /// peer's ISN) and <paramref name="cookie"/> is SEG.ACK - 1 (the ISN we sent). True with the MSS the
    /// cookie carries when the cookie was made by us, for this 4-tuple, in the current or previous minute.
    /// </summary>
    public bool TryValidate(in ConnectionId id, uint peerIsn, uint cookie, long nowMicroseconds, out int mss)
    {
        var counter = Counter(nowMicroseconds);
        if (TryOpen(_current, id, peerIsn, cookie, counter, out var index, out _))
        {
            mss = MssTable[(int)index];
            return true;
        }

        // The previous secret only for cookies made before the rotation, and only until the youngest of
        // them has expired: after that the previous secret would only double a forger's odds.
        if (_hasPrevious
            && counter - _rotatedAtCounter < MaxAgeInPeriods
            && TryOpen(_previous, id, peerIsn, cookie, counter, out index, out var madeAt)
            && madeAt <= _rotatedAtCounter)
        {
            mss = MssTable[(int)index];
            return true;
        }

        mss = 0;
        return false;
    }

    /// <summary>
    /// The TSval for a cookie SYN-ACK: <paramref name="timestampNow"/> with its low
    /// <see cref="TimestampOptionBits"/> bits replaced by the options, moved back one step if that would
    /// put it ahead of the clock, so that our timestamps never run ahead of their clock (RFC 7323 §5.4
    /// wants them monotonic). <paramref name="windowScale"/> is the peer's shift count, -1 for none.
    /// </summary>
    public static uint EncodeTimestamp(uint timestampNow, int windowScale, bool sack, bool ecn)
    {
        if (windowScale is < -1 or > MaxWindowScale)
        {
            throw new ArgumentOutOfRangeException(nameof(windowScale), windowScale, "A window scale is 0 to 14 (RFC 7323 §2.3), or -1 for none.");
        }

        var options = windowScale < 0 ? NoWindowScale : (uint)windowScale;
        if (sack)
        {
            options |= SackBit;
        }

        if (ecn)
        {
            options |= EcnBit;
        }

        var encoded = (timestampNow & ~TimestampOptionMask) | options;
        if ((int)(encoded - timestampNow) > 0)
        {
            encoded -= 1u << TimestampOptionBits;
        }

        return encoded;
    }

    /// <summary>
    /// Reads the options back from the TSecr the peer echoed in its ACK. False when the echo is ahead of
    /// <paramref name="timestampNow"/> (the same clock <see cref="EncodeTimestamp"/> was given): we never
    /// sent such a TSval, so the ACK is forged or belongs to something else.
    /// </summary>
    public static bool TryDecodeTimestamp(uint echoedTsEcr, uint timestampNow, out int windowScale, out bool sack, out bool ecn)
    {
        var options = echoedTsEcr & TimestampOptionMask;
        var scale = options & WindowScaleMask;
        windowScale = scale == NoWindowScale ? -1 : (int)scale;
        sack = (options & SackBit) != 0;
        ecn = (options & EcnBit) != 0;
        return (int)(echoedTsEcr - timestampNow) <= 0;
    }

    private static long Counter(long nowMicroseconds) => nowMicroseconds / CounterPeriodMicroseconds;

    private static uint Compose(in CookieSecret secret, in ConnectionId id, uint peerIsn, uint counter, uint mssIndex) =>
        Hash(secret.Tuple, id, 0, 0) + peerIsn + (counter << CounterShift) + Mac(secret, id, counter, mssIndex) + mssIndex;

    private static uint Mac(in CookieSecret secret, in ConnectionId id, uint counter, uint mssIndex) =>
        (Hash(secret.Minute, id, counter, mssIndex) << IndexBits) & MacMask;

    private static bool TryOpen(in CookieSecret secret, in ConnectionId id, uint peerIsn, uint cookie, long now, out uint mssIndex, out long madeAt)
    {
        // Strip H0 and the peer's ISN; what is left is (counter << 24) + MAC * 4 + index.
        var rest = cookie - Hash(secret.Tuple, id, 0, 0) - peerIsn;
        var age = ((uint)now - (rest >> CounterShift)) & CounterMask;
        madeAt = now - age;
        mssIndex = rest & IndexMask;
        return age < MaxAgeInPeriods
            && (rest & MacMask) == Mac(secret, id, (uint)madeAt, mssIndex);
    }

    private static uint Hash(in SipHashKey key, in ConnectionId id, uint counter, uint mssIndex)
    {
        Span<byte> input = stackalloc byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(input, id.LocalAddress.Value);
        BinaryPrimitives.WriteUInt32LittleEndian(input[4..], id.RemoteAddress.Value);
        BinaryPrimitives.WriteUInt32LittleEndian(input[8..], ((uint)id.LocalPort << 16) | id.RemotePort);
        BinaryPrimitives.WriteUInt32LittleEndian(input[12..], counter);
        BinaryPrimitives.WriteUInt32LittleEndian(input[16..], mssIndex);
        return (uint)SipHash.Hash(key, input);
    }

    /// <summary>The two keys of one secret: H0 over the tuple, H1 over the tuple, the minute and the MSS index.</summary>
    private readonly record struct CookieSecret(SipHashKey Tuple, SipHashKey Minute)
    {
        public static CookieSecret From(ReadOnlySpan<byte> secret)
        {
            if (secret.IsEmpty)
            {
                Span<byte> random = stackalloc byte[SecretSize];
                RandomNumberGenerator.Fill(random);
                return new(SipHashKey.Read(random), SipHashKey.Read(random[SipHashKey.Size..]));
            }

            return secret.Length != SecretSize
                ? throw new ArgumentException($"A SYN cookie secret is {SecretSize} bytes.", nameof(secret))
                : new(SipHashKey.Read(secret), SipHashKey.Read(secret[SipHashKey.Size..]));
        }
    }
}
