using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Guard;

/// <summary>RFC 4987 §3.6 SYN cookies, Linux layout: keyed 4-tuple, minute counter, MSS index, options in the TSval.</summary>
public sealed class SynCookiesTests
{
    private const long Minute = SynCookies.CounterPeriodMicroseconds;
    private const uint PeerIsn = 0xDEAD_BEEF;

    private static readonly ConnectionId Id = new(Ipv4Address.Parse("198.18.0.2"), 80, Ipv4Address.Parse("198.18.0.1"), 40000);

    private static byte[] Secret(byte seed)
    {
        var secret = new byte[SynCookies.SecretSize];
        for (var i = 0; i < secret.Length; i++)
        {
            secret[i] = (byte)(seed + (i * 7));
        }

        return secret;
    }

    [Fact]
    public void Every_mss_table_entry_round_trips()
    {
        var cookies = new SynCookies(Secret(1));
        foreach (var tableMss in SynCookies.MssTable.ToArray())
        {
            var isn = cookies.CreateIsn(Id, PeerIsn, 5 * Minute, tableMss, out var encoded);
            Assert.Equal(tableMss, encoded);
            Assert.True(cookies.TryValidate(Id, PeerIsn, isn, 5 * Minute + 1_000_000, out var mss));
            Assert.Equal(tableMss, mss);
        }
    }

    [Theory]
    [InlineData(0, 536)]
    [InlineData(535, 536)]
    [InlineData(1299, 536)]
    [InlineData(1400, 1300)]
    [InlineData(1452, 1440)]
    [InlineData(9000, 1460)]
    public void A_peer_mss_rounds_down_to_a_table_entry(int peerMss, int expected)
    {
        var cookies = new SynCookies(Secret(1));
        var isn = cookies.CreateIsn(Id, PeerIsn, 0, peerMss, out var encoded);
        Assert.Equal(expected, encoded);
        Assert.True(cookies.TryValidate(Id, PeerIsn, isn, 0, out var mss));
        Assert.Equal(expected, mss);
    }

    [Fact]
    public void A_cookie_from_the_previous_minute_is_accepted_and_one_two_minutes_old_is_not()
    {
        var cookies = new SynCookies(Secret(2));
        var madeAt = (10 * Minute) + 1;
        var isn = cookies.CreateIsn(Id, PeerIsn, madeAt, 1460, out _);

        Assert.True(cookies.TryValidate(Id, PeerIsn, isn, madeAt + Minute - 1, out _));
        Assert.True(cookies.TryValidate(Id, PeerIsn, isn, (12 * Minute) - 1, out _)); // previous minute
        Assert.False(cookies.TryValidate(Id, PeerIsn, isn, 12 * Minute, out _));
        Assert.False(cookies.TryValidate(Id, PeerIsn, isn, madeAt + (2 * Minute), out _));
        Assert.False(cookies.TryValidate(Id, PeerIsn, isn, madeAt + (10 * Minute), out _));

        // The counter field is 8 bits, so 256 minutes later the cookie's counter looks current again;
        // the full minute inside the keyed hash is what rejects it.
        Assert.False(cookies.TryValidate(Id, PeerIsn, isn, madeAt + (256 * Minute), out _));
    }

    [Fact]
    public void A_cookie_from_the_future_is_rejected()
    {
        var cookies = new SynCookies(Secret(2));
        var isn = cookies.CreateIsn(Id, PeerIsn, 20 * Minute, 1460, out _);
        Assert.False(cookies.TryValidate(Id, PeerIsn, isn, 19 * Minute, out _));
    }

    [Fact]
    public void A_cookie_for_another_tuple_or_another_peer_isn_is_rejected()
    {
        var cookies = new SynCookies(Secret(3));
        var isn = cookies.CreateIsn(Id, PeerIsn, 0, 1460, out _);

        Assert.False(cookies.TryValidate(Id with { RemotePort = 40001 }, PeerIsn, isn, 0, out _));
        Assert.False(cookies.TryValidate(Id with { LocalPort = 81 }, PeerIsn, isn, 0, out _));
        Assert.False(cookies.TryValidate(Id with { RemoteAddress = Ipv4Address.Parse("198.18.0.3") }, PeerIsn, isn, 0, out _));
        Assert.False(cookies.TryValidate(Id with { LocalAddress = Ipv4Address.Parse("198.18.0.4") }, PeerIsn, isn, 0, out _));
        Assert.False(cookies.TryValidate(Id, PeerIsn + 1, isn, 0, out _));
    }

    [Fact]
    public void Every_flipped_bit_is_rejected()
    {
        var cookies = new SynCookies(Secret(4));
        foreach (var peerMss in new[] { 536, 1300, 1440, 1460 })
        {
            var isn = cookies.CreateIsn(Id, PeerIsn, 7 * Minute, peerMss, out _);
            for (var bit = 0; bit < 32; bit++)
            {
                Assert.False(cookies.TryValidate(Id, PeerIsn, isn ^ (1u << bit), 7 * Minute, out _), $"bit {bit} for MSS {peerMss}");
            }
        }
    }

    [Fact]
    public void A_cookie_made_under_another_secret_is_rejected()
    {
        var isn = new SynCookies(Secret(5)).CreateIsn(Id, PeerIsn, 0, 1460, out _);
        Assert.False(new SynCookies(Secret(6)).TryValidate(Id, PeerIsn, isn, 0, out _));
    }

    [Fact]
    public void Guessed_cookies_pass_about_once_in_two_to_the_twenty_two()
    {
        var cookies = new SynCookies(Secret(7));
        var passed = 0;
        var guess = 0x1234_5678u;
        for (var i = 0; i < 1 << 20; i++)
        {
            guess = (guess * 747796405u) + 2891336453u;
            passed += cookies.TryValidate(Id, PeerIsn, guess, 0, out _) ? 1 : 0;
        }

        Assert.True(passed <= 2, $"{passed} of 2^20 random cookies passed");
    }

    [Fact]
    public void After_a_rotation_cookies_of_the_old_secret_live_out_their_minute_and_no_more()
    {
        var cookies = new SynCookies(Secret(8));
        var before = cookies.CreateIsn(Id, PeerIsn, (3 * Minute) + 5, 1440, out _);

        cookies.RotateSecret(Secret(9), (3 * Minute) + 10);
        var after = cookies.CreateIsn(Id, PeerIsn, (3 * Minute) + 20, 1440, out _);
        Assert.NotEqual(before, after);

        Assert.True(cookies.TryValidate(Id, PeerIsn, before, (3 * Minute) + 30, out var mss));
        Assert.Equal(1440, mss);
        Assert.True(cookies.TryValidate(Id, PeerIsn, before, (4 * Minute) + 30, out _));
        Assert.True(cookies.TryValidate(Id, PeerIsn, after, (4 * Minute) + 30, out _));
        Assert.False(cookies.TryValidate(Id, PeerIsn, before, 5 * Minute, out _));

        // A second rotation forgets the first secret at once.
        cookies.RotateSecret(Secret(10), (3 * Minute) + 40);
        Assert.False(cookies.TryValidate(Id, PeerIsn, before, (3 * Minute) + 50, out _));
        Assert.True(cookies.TryValidate(Id, PeerIsn, after, (3 * Minute) + 50, out _));
    }

    [Fact]
    public void The_previous_secret_does_not_sign_cookies_dated_after_the_rotation()
    {
        var old = new SynCookies(Secret(11));
        var forgedLater = old.CreateIsn(Id, PeerIsn, 9 * Minute, 1460, out _); // as if made by a leaked old secret

        var cookies = new SynCookies(Secret(11));
        cookies.RotateSecret(Secret(12), 8 * Minute);
        Assert.False(cookies.TryValidate(Id, PeerIsn, forgedLater, 9 * Minute, out _));
    }

    [Fact]
    public void A_secret_of_the_wrong_size_is_refused_and_an_empty_one_is_random()
    {
        Assert.Throws<ArgumentException>(() => new SynCookies(new byte[16]));
        var a = new SynCookies([]).CreateIsn(Id, PeerIsn, 0, 1460, out _);
        var b = new SynCookies([]).CreateIsn(Id, PeerIsn, 0, 1460, out _);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void Timestamp_options_round_trip_for_every_window_scale_and_flag()
    {
        foreach (var now in new uint[] { 0, 1, 63, 64, 1_000_000, 0x8000_0000, uint.MaxValue })
        {
            for (var scale = -1; scale <= 14; scale++)
            {
                foreach (var sack in new[] { false, true })
                {
                    foreach (var ecn in new[] { false, true })
                    {
                        var tsVal = SynCookies.EncodeTimestamp(now, scale, sack, ecn);

                        // Never ahead of the clock, and less than one step of 64 behind it.
                        var behind = now - tsVal;
                        Assert.InRange(behind, 0u, 63u);

                        Assert.True(SynCookies.TryDecodeTimestamp(tsVal, now + 3, out var decodedScale, out var decodedSack, out var decodedEcn));
                        Assert.Equal(scale, decodedScale);
                        Assert.Equal(sack, decodedSack);
                        Assert.Equal(ecn, decodedEcn);
                    }
                }
            }
        }
    }

    [Fact]
    public void An_encoded_timestamp_keeps_the_high_bits_of_the_clock()
    {
        Assert.Equal(0x1234_5640u | 0x1Fu, SynCookies.EncodeTimestamp(0x1234_567F, -1, true, false));
        Assert.Equal(0x1234_5600u | 0x3Fu, SynCookies.EncodeTimestamp(0x1234_5641, -1, true, true)); // 0x7F > 0x41: one step back
    }

    [Fact]
    public void An_echo_ahead_of_our_clock_is_rejected()
    {
        var tsVal = SynCookies.EncodeTimestamp(1_000_000, 7, true, false);
        Assert.False(SynCookies.TryDecodeTimestamp(tsVal + 1000, 1_000_000, out _, out _, out _));
        Assert.True(SynCookies.TryDecodeTimestamp(tsVal, 1_000_000, out _, out _, out _));
    }

    [Fact]
    public void A_window_scale_outside_rfc_7323_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SynCookies.EncodeTimestamp(0, 15, false, false));
        Assert.Throws<ArgumentOutOfRangeException>(() => SynCookies.EncodeTimestamp(0, -2, false, false));
    }
}
