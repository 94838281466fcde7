using System.Diagnostics.Metrics;

namespace Vso.MemoryPinning;

/// <summary>
/// Byte counters of one owner of pinned memory (a <see cref="PinnedBlockPool"/>, a
/// <see cref="ForeignMemoryPinner"/>, or several sharing one instance). Each instance also feeds
/// <see cref="Global"/>, which the "Vso.MemoryPinning" meter publishes. Reading an instance, rather than
/// the global aggregate, gives exact values even while other pools work in parallel. Internal: users read the
/// figures from their owner (<see cref="PinnedBlockPool.PinnedBytes"/>, the stack's PinnedBytes) or, process-wide,
/// from the meter; pools share counters through <see cref="PinnedBlockPool(PinnedBlockPoolOptions, PinnedBlockPool)"/>.
/// </summary>
internal sealed class PinningMetrics
{
    /// <summary>Meter name for the System.Diagnostics.Metrics instruments.</summary>
    public const string MeterName = "Vso.MemoryPinning";

    private readonly PinningMetrics? _parent;
    private readonly bool _isGlobal;
    private long _pinned;
    private long _locked;
    private long _leased;

    /// <summary>Creates counters that also add up into <see cref="Global"/>.</summary>
    public PinningMetrics()
        : this(Global, isGlobal: false)
    {
    }

    private PinningMetrics(PinningMetrics? parent, bool isGlobal)
    {
        _parent = parent;
        _isGlobal = isGlobal;
    }

    /// <summary>Sum over every instance in the process; published by the meter.</summary>
    public static PinningMetrics Global { get; } = CreateGlobal();

    /// <summary>Bytes of rented pool blocks plus pinned foreign memory.</summary>
    public long PinnedBytes => Volatile.Read(ref _pinned);

    /// <summary>
    /// For an instance: page-rounded bytes of the lock requests this owner holds. For <see cref="Global"/>:
    /// the distinct bytes the process has locked through Vso.MemoryPinning (a page that two owners lock
    /// counts once, as in VmLck of /proc/self/status).
    /// </summary>
    public long LockedBytes => _isGlobal ? PageLocker.Process.LockedBytes : Volatile.Read(ref _locked);

    /// <summary>Bytes covered by active <see cref="PinLease"/>s.</summary>
    public long LeasedBytes => Volatile.Read(ref _leased);

    internal void AddPinned(long delta)
    {
        Interlocked.Add(ref _pinned, delta);
        _parent?.AddPinned(delta);
    }

    // Not forwarded to the parent: overlapping requests would be counted twice there; Global reads the
    // process-wide PageLocker instead.
    internal void AddLocked(long delta) => Interlocked.Add(ref _locked, delta);

    internal void AddLeased(long delta)
    {
        Interlocked.Add(ref _leased, delta);
        _parent?.AddLeased(delta);
    }

    private static PinningMetrics CreateGlobal()
    {
        var global = new PinningMetrics(null, isGlobal: true);
        PinningMeter.Create(global);
        return global;
    }

    private static class PinningMeter
    {
        // Lives for the process, like the counters it observes.
        internal static Meter? Instance { get; private set; }

        internal static void Create(PinningMetrics global)
        {
            var meter = new Meter(MeterName);
            Instance = meter;
            meter.CreateObservableUpDownCounter("vso.pinning.pinned_bytes", () => global.PinnedBytes, "By", "Bytes of rented pinned blocks and pinned foreign memory.");
            meter.CreateObservableUpDownCounter("vso.pinning.locked_bytes", () => global.LockedBytes, "By", "Bytes locked in RAM with mlock(2).");
            meter.CreateObservableUpDownCounter("vso.pinning.leased_bytes", () => global.LeasedBytes, "By", "Bytes covered by active pin leases.");
        }
    }
}
