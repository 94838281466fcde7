namespace Vso.Transport.Interface;

/// <summary>
/// Datagrams dropped by the martian filter, one count per <see cref="MartianReason"/>. Incremented on the packet
/// path by the engine thread (one interlocked add, no allocation); readable from any thread.
/// </summary>
internal sealed class MartianCounters
{
    private static readonly int ReasonCount = Enum.GetValues<MartianReason>().Length;

    private readonly long[] _dropped = new long[ReasonCount];

    public void Drop(MartianReason reason) => Interlocked.Increment(ref _dropped[(int)reason]);

    public long Dropped(MartianReason reason) => Volatile.Read(ref _dropped[(int)reason]);

    public long Total
    {
        get
        {
            long total = 0;
            for (var i = 0; i < _dropped.Length; i++)
            {
                total += Volatile.Read(ref _dropped[i]);
            }

            return total;
        }
    }
}
