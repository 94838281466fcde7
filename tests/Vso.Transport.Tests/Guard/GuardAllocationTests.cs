using Vso.Transport.Engine;
using Vso.Transport.Interface;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Guard;

/// <summary>The per-packet paths of the guard pieces allocate nothing once constructed.</summary>
public sealed class GuardAllocationTests
{
    private static readonly Ipv4Address Local = Ipv4Address.Parse("198.18.0.2");
    private static readonly Ipv4Address Remote = Ipv4Address.Parse("198.18.0.1");

    [Fact]
    public void Hot_paths_allocate_nothing()
    {
        var cookies = new SynCookies(new byte[SynCookies.SecretSize]);
        var ports = new EphemeralPortAllocator(new byte[SipHashKey.Size]);
        var filter = new MartianFilter(Local, 24);
        var bucket = TokenBucket.PerSecond(100, 10, 0);
        var stackLimit = new RandomizedIntervalLimit(1000, 1_000_000, seed: 1);

        var warm = Run(2_000); // JIT and tiering out of the measurement
        var before = GC.GetAllocatedBytesForCurrentThread();
        var measured = Run(10_000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(warm != 0 && measured != 0);
        Assert.Equal(0, allocated);

        long Run(int count)
        {
            var sink = 0L;
            for (var i = 0; i < count; i++)
            {
                var id = new ConnectionId(Local, 80, Remote, (ushort)(1024 + i));
                var isn = cookies.CreateIsn(id, (uint)i, i * 1000L, 1460, out var encodedMss);
                sink += cookies.TryValidate(id, (uint)i, isn, i * 1000L, out var mss) ? mss + encodedMss : 0;
                var tsVal = SynCookies.EncodeTimestamp((uint)i, 7, true, false);
                sink += SynCookies.TryDecodeTimestamp(tsVal, (uint)i, out var scale, out _, out _) ? scale : 0;
                sink += ports.TryAllocate(Local, Remote, (ushort)i, default(NothingInUse), out var port) ? port : 0;
                sink += (int)filter.ClassifyTcp(Remote, 40000, Local, 80) + (filter.IsOnLink(Remote) ? 1 : 0);
                sink += bucket.TryTake(i * 1000L) ? 1 : 0;
                sink += stackLimit.TryTake(i * 1000L) ? 1 : 0;
            }

            return sink;
        }
    }

    private readonly struct NothingInUse : IPortInUseProbe
    {
        public bool IsInUse(in ConnectionId candidate) => false;
    }
}
