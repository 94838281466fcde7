using System.Diagnostics.Metrics;

namespace Vso.Transport.Interface;

/// <summary>
/// Datagrams dropped by the martian filter, one count per <see cref="MartianReason"/>. Incremented on the packet
/// path by the engine thread (one interlocked add, no allocation); readable from any thread and exported as the
/// observable counter "vso.ip.martians_dropped" with the reason as a tag.
/// </summary>
internal sealed class MartianCounters
{
    private static readonly int ReasonCount = Enum.GetValues<MartianReason>().Length;

    private readonly long[] _dropped = new long[ReasonCount];

    public const string InstrumentName = "vso.ip.martians_dropped";

    private readonly KeyValuePair<string, object?> _engine;

    /// <param name="engine">The shard these counts belong to: each engine reports its own series (tag vso.engine).</param>
    public MartianCounters(Meter? meter = null, int engine = 0)
    {
        _engine = new("vso.engine", engine);
        meter?.CreateObservableCounter(
            InstrumentName,
            Observe,
            unit: "{packet}",
            description: "Datagrams dropped for a martian source or destination, a land segment or an off-subnet source without a gateway (RFC 1122 §3.2.1.3, RFC 1812 §5.3.7), by reason.");
    }

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

    // Only non-zero series are reported.
    private IEnumerable<Measurement<long>> Observe()
    {
        for (var i = 1; i < _dropped.Length; i++)
        {
            var value = Volatile.Read(ref _dropped[i]);
            if (value != 0)
            {
                yield return new Measurement<long>(value, new KeyValuePair<string, object?>("reason", ((MartianReason)i).ToString()), _engine);
            }
        }
    }
}
