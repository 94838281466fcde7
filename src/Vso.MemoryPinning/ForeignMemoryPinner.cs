using System.Buffers;

namespace Vso.MemoryPinning;

/// <summary>
/// Pins memory the stack does not own — the caller's <see cref="ReadOnlyMemory{T}"/> held by the embedding
/// API until acknowledged (DESIGN.md §2) — and grants <see cref="PinLease"/>s on ranges of it. The memory
/// stays pinned (and locked, if asked) until its <see cref="ForeignPin"/> is released AND every lease on it
/// has ended.
/// </summary>
/// <remarks>Thread-safe (one lock).</remarks>
public sealed class ForeignMemoryPinner : IPinLeaseOwner
{
    private readonly Lock _gate = new();
    private readonly Dictionary<long, (ForeignPin Pin, int Length)> _leases = [];
    private readonly PageLocker _locker;
    private long _nextPinId;
    private long _nextLeaseId;
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
    public int ActivePins
    {
        get
        {
            lock (_gate)
            {
                return _activePins;
            }
        }
    }

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

        lock (_gate)
        {
            pin.Id = ++_nextPinId;
            _activePins++;
        }

        Metrics.AddPinned(pin.Length);
        Metrics.AddLocked(pin.LockedBytes);
        return pin;
    }

    /// <summary>Ends a lease. Each lease has its own token, so ending one twice does nothing.</summary>
    void IPinLeaseOwner.EndLease(nint address, int length, long token)
    {
        ForeignPin? unpin = null;
        lock (_gate)
        {
            if (!_leases.Remove(token, out var lease))
            {
                return;
            }

            Metrics.AddLeased(-lease.Length);
            var pin = lease.Pin;
            if (--pin.LeaseCount == 0 && pin.IsReleased)
            {
                unpin = pin;
                _activePins--;
            }
        }

        if (unpin is not null)
        {
            Unpin(unpin);
        }
    }

    internal PinLease Lease(ForeignPin pin, int offset, int length)
    {
        if ((uint)offset > (uint)pin.Length || (uint)length > (uint)(pin.Length - offset))
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"Range {offset}+{length} is outside the pinned memory of {pin.Length} bytes.");
        }

        lock (_gate)
        {
            if (pin.IsReleased)
            {
                throw new ObjectDisposedException(nameof(ForeignPin), $"Foreign pin {pin.Id} was already released; no new lease can be taken on it.");
            }

            pin.LeaseCount++;
            var leaseId = ++_nextLeaseId;
            _leases.Add(leaseId, (pin, length));
            Metrics.AddLeased(length);
            return new PinLease(this, pin.Address + offset, length, leaseId);
        }
    }

    internal void Release(ForeignPin pin)
    {
        lock (_gate)
        {
            if (pin.IsReleased)
            {
                return;
            }

            pin.IsReleased = true;
            if (pin.LeaseCount > 0)
            {
                return; // the last EndLease unpins
            }

            _activePins--;
        }

        Unpin(pin);
    }

    internal int GetLeaseCount(ForeignPin pin)
    {
        lock (_gate)
        {
            return pin.LeaseCount;
        }
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
public interface IForeignPinObserver
{
    /// <summary>Called once, outside the pinner's lock, after the memory was unpinned (and unlocked) and the counters updated.</summary>
    void OnUnpinned(ForeignPin pin);
}

/// <summary>
/// A registration of pinned foreign memory: a stable <see cref="Address"/> until released and unleased.
/// Dispose releases it; the memory is unpinned once no lease on it is active any more.
/// </summary>
public sealed class ForeignPin : IDisposable
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
    public bool IsReleased { get; internal set; }

    /// <summary>True until the memory is actually unpinned.</summary>
    public bool IsPinned { get; private set; } = true;

    public int ActiveLeases => _owner.GetLeaseCount(this);

    /// <summary>The owner's own word for this registration, given to <see cref="ForeignMemoryPinner.Pin(ReadOnlyMemory{byte}, IForeignPinObserver?, long)"/>.</summary>
    public long Token { get; internal set; }

    internal IForeignPinObserver? Observer { get; set; }

    internal int LeaseCount { get; set; }

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
