using Vso.MemoryPinning;

namespace Vso.Transport.Kestrel;

/// <summary>
/// A pinned block written by a <see cref="VsoOutputWriter"/>, reference counted: one reference while the writer
/// may still write into it, one per descriptor of it queued in the TCP sender. The last release returns the block
/// to the pool (which keeps it out of reuse until the last link lease on it ends).
/// </summary>
internal sealed class BlockRef(PinnedBlock block, int classIndex = 0)
{
    private int _refs = 1;

    public PinnedBlock Block { get; } = block;

    /// <summary>What the block's ranges carry as host token: its size class and id (<see cref="PinnedBlockClasses"/>).</summary>
    public long HostToken { get; } = PinnedBlockClasses.HostToken(classIndex, block.Id);

    public void AddRef() => Interlocked.Increment(ref _refs);

    /// <summary>Drops one reference; true when it was the last and the block went back to the pool.</summary>
    public bool Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
        {
            Block.Dispose();
            return true;
        }

        return false;
    }
}
