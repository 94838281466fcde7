using Vso.MemoryPinning;

namespace Vso.Transport.Api;

/// <summary>
/// The pinning of one stack's application memory: one <see cref="ForeignMemoryPinner"/> (mlock optional)
/// shared by the stack's connections, feeding one <see cref="PinningMetrics"/> instance, so a stack's
/// pinned, locked and leased bytes are exact even while other stacks work in the same process.
/// </summary>
internal sealed class PinAccounting
{
    public PinAccounting(bool mlock)
    {
        Metrics = new PinningMetrics();
        Pinner = new ForeignMemoryPinner(mlock, Metrics);
    }

    public ForeignMemoryPinner Pinner { get; }

    public PinningMetrics Metrics { get; }

    public long PinnedBytes => Metrics.PinnedBytes;

    public long LockedBytes => Metrics.LockedBytes;

    public long LeasedBytes => Metrics.LeasedBytes;
}
