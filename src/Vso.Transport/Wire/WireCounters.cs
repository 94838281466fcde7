using System.Diagnostics.Metrics;

namespace Vso.Transport.Wire;

/// <summary>
/// Drop counts per layer and reason, one instance per stack. Incremented on the packet path (one interlocked add,
/// no allocation); read by metrics collectors on other threads through the observable counter "vso.wire.dropped".
/// </summary>
internal sealed class WireCounters
{
    public const string DroppedInstrumentName = "vso.wire.dropped";

    private static readonly string[] LayerNames = ["ethernet", "ipv4", "arp", "icmp", "tcp"];

    private readonly long[] _dropped = new long[WireLayerInfo.Count * WireStatusInfo.Count];

    private readonly KeyValuePair<string, object?> _engine;

    /// <param name="engine">The shard these counts belong to: each engine reports its own series (tag vso.engine).</param>
    public WireCounters(Meter? meter = null, int engine = 0)
    {
        _engine = new("vso.engine", engine);
        meter?.CreateObservableCounter(
            DroppedInstrumentName,
            Observe,
            unit: "{packet}",
            description: "Received packets dropped by the wire layer, by layer and reason.");
    }

    public void Drop(WireLayer layer, WireStatus status) => Interlocked.Increment(ref _dropped[Index(layer, status)]);

    public long Dropped(WireLayer layer, WireStatus status) => Volatile.Read(ref _dropped[Index(layer, status)]);

    public long TotalDropped
    {
        get
        {
            long total = 0;
            for (int i = 0; i < _dropped.Length; i++)
            {
                total += Volatile.Read(ref _dropped[i]);
            }

            return total;
        }
    }

    private static int Index(WireLayer layer, WireStatus status)
    {
        // A bad enum value is a programming error, not network input: fail loudly.
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((int)layer, WireLayerInfo.Count, nameof(layer));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((int)status, WireStatusInfo.Count, nameof(status));
        return ((int)layer * WireStatusInfo.Count) + (int)status;
    }

    // Only non-zero series are reported, so an idle stack exports nothing rather than 60 zeros.
    private IEnumerable<Measurement<long>> Observe()
    {
        for (int layer = 0; layer < WireLayerInfo.Count; layer++)
        {
            for (int status = 0; status < WireStatusInfo.Count; status++)
            {
                long value = Volatile.Read(ref _dropped[(layer * WireStatusInfo.Count) + status]);
                if (value != 0)
                {
                    yield return new Measurement<long>(
                        value,
                        new KeyValuePair<string, object?>("layer", LayerNames[layer]),
                        new KeyValuePair<string, object?>("reason", ((WireStatus)status).ToString()),
                        _engine);
                }
            }
        }
    }
}
