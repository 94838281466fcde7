using System.Buffers;

namespace Vso.MemoryPinning;

/// <summary>
/// Pins memory the stack does not own — the caller's <see cref="ReadOnlyMemory{T}"/> held by the embedding
/// API until acknowledged (DESIGN.md §2) — and grants <see cref="PinLease"/>s on ranges of it. The memory
/// stays pinned (and locked, if asked) until its <see cref="ForeignPin"/> is released AND every lease on it
/// has ended.
/// </summary>
/// <remarks>
/// Thread-safe without a lock: a pin's lease count and its released flag share one word changed by compare-and-swap
/// (whoever brings it to "released, no lease" unpins, exactly once), and the active leases live in a
/// <see cref="LeaseTable{T}"/>, so taking and ending a lease (once per pinned segment on the packet path) costs a few
/// atomic operations, no lock and no dictionary entry.
/// </remarks>
internal sealed class ForeignMemoryPinner : IPinLeaseOwner
{
    private readonly LeaseTable<ForeignPin> _leases = new();
    private readonly PageLocker _locker;
    private long _nextPinId;
    private int _activePins;

    /// <param name="mlock">Also mlock(2) the pages of every pinned range, with page reference counts shared process-wide.</param>
    /// <param name="metrics">Counters to feed; a new instance (adding into <see cref="PinningMetrics.Global"/>) if null.</param>
    public ForeignMemoryPinner(bool mlock = false, PinningMetrics? metrics = null)
        : this(mlock, metrics, PageLocker.Process)
    {
    }

    internal ForeignMemoryPinner(bool mlock, PinningMetrics? metrics, PageLocker locker)
    {
        Mlock = mlock;
        Metrics = metrics ?? new PinningMetrics();
        _locker = locker;
    }

    public bool Mlock { get; }

    public PinningMetrics Metrics { get; }

    /// <summary>Pins not yet unpinned (released ones with active leases included).</summary>
    public int ActivePins => Volatile.Read(ref _activePins);

    /// <summary>
    /// Pins <paramref name="memory"/> with <see cref="ReadOnlyMemory{T}.Pin"/> (a pinned GCHandle for an array,
    /// the manager's own pin for a <see cref="MemoryManager{T}"/>) and returns the registration.
    /// </summary>
    public ForeignPin Pin(ReadOnlyMemory<byte> memory) => Pin(memory, null, 0);

    /// <summary>
    /// Pins <paramref name="memory"/> like <see cref="Pin(ReadOnlyMemory{byte})"/> and tells
    /// <paramref name="observer"/> when it is actually unpinned (released and no lease left), with
    /// <paramref name="token"/> kept in <see cref="ForeignPin.Token"/> so the owner can find its registration
    /// without a lookup or an allocation.
    /// </summary>
    public ForeignPin Pin(ReadOnlyMemory<byte> memory, IForeignPinObserver? observer, long token)
    {
        if (memory.IsEmpty)
        {
            throw new ArgumentException("Cannot pin empty memory: it has no address.", nameof(memory));
        }

        var handle = memory.Pin();
        var pin = ForeignPin.Create(this, handle, memory.Length);
        pin.Observer = observer;
        pin.Token = token;
        try
        {
            if (Mlock)
            {
                pin.LockedBytes = _locker.Lock(pin.Address, pin.Length);
            }
        }
        catch
        {
            handle.Dispose();
            throw;
        }

        pin.Id = Interlocked.Increment(ref _nextPinId);
        Interlocked.Increment(ref _activePins);
        Metrics.AddPinned(pin.Length);
        Metrics.AddLocked(pin.LockedBytes);
        return pin;
    }

    /// <summary>Ends a lease. Each lease has its own token, so ending one twice does nothing.</summary>
    void IPinLeaseOwner.EndLease(nint address, int length, long token)
    {
#pragma warning disable CA2000 // The pin is owned by the pinner's table, not by this lease: ending a lease only counts down.
        if (!_leases.TryRemove(token, out var pin, out var leased))
#pragma warning restore CA2000
        {
            return;
        }

        Metrics.AddLeased(-leased);
        if (pin!.EndLease())
        {
            // This lease was the last one on a released pin.
            Interlocked.Decrement(ref _activePins);
            Unpin(pin);
        }
    }

    internal PinLease Lease(ForeignPin pin, int offset, int length)
    {
        if ((uint)offset > (uint)pin.Length || (uint)length > (uint)(pin.Length - offset))
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"Range {offset}+{length} is outside the pinned memory of {pin.Length} bytes.");
        }

        if (!pin.TryAddLease())
        {
            throw new ObjectDisposedException(nameof(ForeignPin), $"Foreign pin {pin.Id} was already released; no new lease can be taken on it.");
        }

        var token = _leases.Add(pin, length);
        Metrics.AddLeased(length);
        return new PinLease(this, pin.Address + offset, length, token);
    }

    internal void Release(ForeignPin pin)
    {
        if (!pin.MarkReleased())
        {
            return; // already released, or leases remain: the last EndLease unpins
        }

        Interlocked.Decrement(ref _activePins);
        Unpin(pin);
    }

    private void Unpin(ForeignPin pin)
    {
        if (pin.LockedBytes > 0)
        {
            _locker.Unlock(pin.Address, pin.Length);
            Metrics.AddLocked(-pin.LockedBytes);
        }

        pin.ReleaseHandle();
        Metrics.AddPinned(-pin.Length);
        var observer = pin.Observer;
        pin.Observer = null;
        observer?.OnUnpinned(pin);
    }
}

/// <summary>Learns when a <see cref="ForeignPin"/> is actually unpinned: released and its last lease ended.</summary>
internal interface IForeignPinObserver
{
    /// <summary>Called once, outside the pinner's lock, after the memory was unpinned (and unlocked) and the counters updated.</summary>
    void OnUnpinned(ForeignPin pin);
}

/// <summary>
/// A registration of pinned foreign memory: a stable <see cref="Address"/> until released and unleased.
/// Dispose releases it; the memory is unpinned once no lease on it is active any more.
/// </summary>
internal sealed class ForeignPin : IDisposable
{
    private readonly ForeignMemoryPinner _owner;
    private MemoryHandle _handle;

    private ForeignPin(ForeignMemoryPinner owner, MemoryHandle handle, nint address, int length)
    {
        _owner = owner;
        _handle = handle;
        Address = address;
        Length = length;
    }

    public long Id { get; internal set; }

    /// <summary>Stable address of the first byte while pinned.</summary>
    public nint Address { get; }

    public int Length { get; }

    /// <summary>True once <see cref="Dispose"/> was called (the memory may still be pinned for active leases).</summary>
    public bool IsReleased => (Volatile.Read(ref _state) & ReleasedBit) != 0;

    /// <summary>True until the memory is actually unpinned.</summary>
    public bool IsPinned { get; private set; } = true;

    public int ActiveLeases => Volatile.Read(ref _state) >> 1;

    /// <summary>The owner's own word for this registration, given to <see cref="ForeignMemoryPinner.Pin(ReadOnlyMemory{byte}, IForeignPinObserver?, long)"/>.</summary>
    public long Token { get; internal set; }

    internal IForeignPinObserver? Observer { get; set; }

    // Leases << 1 | released: one word, so that "released with no lease left" is reached exactly once.
    private const int ReleasedBit = 1;
    private int _state;

    /// <summary>One more lease, unless released (then false).</summary>
    internal bool TryAddLease()
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            if ((state & ReleasedBit) != 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _state, state + 2, state) == state)
            {
                return true;
            }
        }
    }

    /// <summary>One lease fewer; true if that left the pin released with no lease (the caller unpins).</summary>
    internal bool EndLease() => Interlocked.Add(ref _state, -2) == ReleasedBit;

    /// <summary>Marks the pin released; true if it was not already and has no lease (the caller unpins).</summary>
    internal bool MarkReleased()
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            if ((state & ReleasedBit) != 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _state, state | ReleasedBit, state) == state)
            {
                return state == 0;
            }
        }
    }

    internal long LockedBytes { get; set; }

    /// <summary>Leases <paramref name="length"/> bytes at <paramref name="offset"/>; the memory stays pinned until the lease ends.</summary>
    public PinLease Lease(int offset, int length) => _owner.Lease(this, offset, length);

    public void Dispose() => _owner.Release(this);

    internal static unsafe ForeignPin Create(ForeignMemoryPinner owner, MemoryHandle handle, int length)
        => new(owner, handle, (nint)handle.Pointer, length);

    internal void ReleaseHandle()
    {
        IsPinned = false;
        _handle.Dispose();
        _handle = default;
    }
}
