using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Tcp;

/// <summary>RFC 6528 §3: ISN = M + F(4-tuple, secret), M ticking every 4 µs.</summary>
public sealed class IsnGeneratorTests
{
    private static readonly Ipv4Address Local = Ipv4Address.Parse("198.18.0.2");
    private static readonly Ipv4Address Remote = Ipv4Address.Parse("198.18.0.1");

    [Fact]
    public void The_same_connection_advances_with_the_four_microsecond_clock()
    {
        var isn = new IsnGenerator([1, 2, 3]);
        var first = isn.Next(1_000_000, Local, 80, Remote, 40000);
        var later = isn.Next(1_000_000 + (4 * 12345), Local, 80, Remote, 40000);
        Assert.Equal(12345u, later - first);
    }

    [Fact]
    public void Different_connections_and_different_secrets_get_unrelated_numbers()
    {
        var isn = new IsnGenerator([1, 2, 3]);
        var a = isn.Next(0, Local, 80, Remote, 40000);
        var b = isn.Next(0, Local, 80, Remote, 40001);
        var c = isn.Next(0, Local, 81, Remote, 40000);
        var d = new IsnGenerator([9, 9, 9]).Next(0, Local, 80, Remote, 40000);
        Assert.Equal(4, new HashSet<uint> { a, b, c, d }.Count);

        // Neighbouring ports must not give neighbouring numbers (the hash hides the tuple).
        Assert.True(Math.Abs((long)a - b) > 1_000_000, $"{a} and {b} are too close");
    }

    [Fact]
    public void An_empty_secret_is_replaced_by_a_random_one()
    {
        var a = new IsnGenerator([]).Next(0, Local, 80, Remote, 40000);
        var b = new IsnGenerator([]).Next(0, Local, 80, Remote, 40000);
        Assert.NotEqual(a, b);
    }
}
