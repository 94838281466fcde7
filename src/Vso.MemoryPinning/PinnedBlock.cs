using System.Buffers;

namespace Vso.MemoryPinning;

/// <summary>Names one rental of one block: the block's id and the generation it was rented under.</summary>
internal readonly record struct BlockToken(int BlockId, long Generation);

/// <summary>
/// One rental of a block of a <see cref="PinnedBlockPool"/>: native memory the GC never moves, at a stable
/// <see cref="Address"/>. Dispose returns it to the pool (a second Dispose does nothing). A new instance
/// is created for every rental, so a <see cref="Memory{T}"/> kept from an earlier rental throws
/// <see cref="ObjectDisposedException"/> instead of reaching whoever rents the block next.
/// </summary>
public sealed class PinnedBlock : MemoryManager<byte>
{
    private readonly PinnedBlockPool _pool;
    private volatile bool _released;

    internal PinnedBlock(PinnedBlockPool pool, int id, nint address, int length, long generation)
    {
        _pool = pool;
        Id = id;
        Address = address;
        Length = length;
        Generation = generation;
    }

    /// <summary>Stable address of the first byte.</summary>
    public nint Address { get; }

    /// <summary>Length in bytes (the pool's block size).</summary>
    public int Length { get; }

    /// <summary>Changes every time the block is returned and rented again; never repeats within a pool.</summary>
    public long Generation { get; }

    /// <summary>Index of the block in its pool; the same across rentals.</summary>
    public int Id { get; }

    internal BlockToken Token => new(Id, Generation);

    /// <summary>False once disposed (returned to the pool).</summary>
    public bool IsRented => !_released;

    public PinnedBlockPool Pool => _pool;

    /// <summary>
    /// Leases <paramref name="length"/> bytes at <paramref name="offset"/>: the block is not reused until the
    /// lease ends, even if this rental is disposed meanwhile.
    /// </summary>
    public PinLease Lease(int offset, int length)
    {
        if ((uint)offset > (uint)Length || (uint)length > (uint)(Length - offset))
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"Range {offset}+{length} is outside the block of {Length} bytes.");
        }

        return _pool.Lease(Id, Generation, Address + offset, length);
    }

    public override unsafe Span<byte> GetSpan()
    {
        ThrowIfReleased();
        return new Span<byte>((void*)Address, Length);
    }

    /// <summary>
    /// The memory is always pinned: the handle holds only the address, no GCHandle. It does not keep the
    /// rental alive; use <see cref="Lease"/> for that.
    /// </summary>
    public override unsafe MemoryHandle Pin(int elementIndex = 0)
    {
        ThrowIfReleased();
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)Length, nameof(elementIndex));
        return new MemoryHandle((byte*)Address + elementIndex, default, this);
    }

    public override void Unpin()
    {
    }

    internal bool MarkReleased()
    {
        if (_released)
        {
            return false;
        }

        _released = true;
        return true;
    }

    /// <summary>Returns the block to its pool. A second call does nothing.</summary>
    public void Dispose() => ((IDisposable)this).Dispose();

    protected override void Dispose(bool disposing) => _pool.Return(this);

    private void ThrowIfReleased()
    {
        if (_released)
        {
            throw new ObjectDisposedException(nameof(PinnedBlock), $"Block {Id} generation {Generation} was already returned to the pool.");
        }
    }
}
