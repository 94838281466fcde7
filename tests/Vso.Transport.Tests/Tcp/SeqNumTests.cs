using Vso.Transport.Tcp;

namespace Vso.Transport.Tests.Tcp;

/// <summary>RFC 9293 §3.4: sequence numbers compare modulo 2^32, right across wraparound.</summary>
public sealed class SeqNumTests
{
    private static readonly SeqNum NearWrap = new(uint.MaxValue - 10);

    [Fact]
    public void Comparisons_hold_across_wraparound()
    {
        var after = NearWrap + 20; // wrapped to 9
        Assert.Equal(9u, after.Value);
        Assert.True(NearWrap < after);
        Assert.True(NearWrap <= after);
        Assert.True(after > NearWrap);
        Assert.True(after >= NearWrap);
        Assert.False(after < NearWrap);
        var same = NearWrap + 0;
        Assert.True(NearWrap <= same && NearWrap >= same);
    }

    [Fact]
    public void Difference_is_a_signed_distance()
    {
        var after = NearWrap + 20;
        Assert.Equal(20, after - NearWrap);
        Assert.Equal(-20, NearWrap - after);
        Assert.Equal(NearWrap, after - 20);
    }

    [Fact]
    public void Window_is_half_open_and_wraps()
    {
        var high = NearWrap + 100;
        Assert.True(NearWrap.InWindow(NearWrap, high));
        Assert.True((NearWrap + 50).InWindow(NearWrap, high));
        Assert.False(high.InWindow(NearWrap, high));
        Assert.False((NearWrap - 1).InWindow(NearWrap, high));
    }

    [Fact]
    public void Max_and_min_follow_the_modular_order()
    {
        var after = NearWrap + 20;
        Assert.Equal(after, SeqNum.Max(NearWrap, after));
        Assert.Equal(NearWrap, SeqNum.Min(after, NearWrap));
    }
}
