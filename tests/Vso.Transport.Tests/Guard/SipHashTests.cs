using Vso.Transport.Tcp;

namespace Vso.Transport.Tests.Guard;

/// <summary>SipHash-2-4 against the reference vectors of Aumasson and Bernstein (key 00..0f, message 00..len-1).</summary>
public sealed class SipHashTests
{
    private static readonly SipHashKey ReferenceKey = SipHashKey.Read([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);

    [Theory]
    [InlineData(0, 0x726FDB47DD0E0E31UL)]
    [InlineData(15, 0xA129CA6149BE45E5UL)]
    public void Matches_the_reference_vectors(int length, ulong expected)
    {
        var message = new byte[length];
        for (var i = 0; i < length; i++)
        {
            message[i] = (byte)i;
        }

        Assert.Equal(expected, SipHash.Hash(ReferenceKey, message));
    }

    [Fact]
    public void Every_length_up_to_two_words_depends_on_every_byte_and_on_the_key()
    {
        var otherKey = SipHashKey.Read([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        var seen = new HashSet<ulong>();
        for (var length = 0; length <= 17; length++)
        {
            var message = new byte[length];
            Assert.True(seen.Add(SipHash.Hash(ReferenceKey, message)));
            Assert.True(seen.Add(SipHash.Hash(otherKey, message)));
            for (var i = 0; i < length; i++)
            {
                message[i] = 1;
                Assert.True(seen.Add(SipHash.Hash(ReferenceKey, message)));
                message[i] = 0;
            }
        }
    }

    [Fact]
    public void A_short_key_is_refused() =>
        Assert.Throws<ArgumentException>(() => SipHashKey.Read(new byte[15]));
}
