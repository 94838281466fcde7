using Vso.MemoryPinning;
using Vso.Transport.Api;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The send host of one connection (DESIGN.md §2): the bytes behind its queued ranges live in pinned blocks, which
/// <see cref="VsoOutputWriter"/> filled. A range names its block by size class, id and generation, so every read and
/// lease is checked against the block's pool and a stale range (block already released) is refused before any byte
/// is read. It holds one block reference per queued range and gives the writer its credit back when a range is
/// acknowledged or failed. Engine thread only.
/// </summary>
internal sealed class PinnedBlockSendHost(PinnedBlockClasses blocks, VsoOutputWriter output) : IVsoSendHost
{
    private readonly Dictionary<long, BlockRef> _blocks = [];

    /// <summary>A range of <paramref name="block"/> is about to be queued; its reference is released on acknowledgment.</summary>
    public void Track(BlockRef block) => _blocks[block.HostToken] = block;

    /// <summary>Engine thread, when the pooled set is given back: true when no block is held (every range acknowledged or failed).</summary>
    public bool TryReset() => _blocks.Count == 0;

    public unsafe void CopyTo(VsoSendRange range, int offset, Span<byte> destination)
    {
        // Validate refuses a range whose block was released (StaleDescriptorException) before any byte is read.
        var address = range.Address + offset;
        _ = blocks.ForToken(range.HostToken).Validate(PinnedBlockClasses.BlockId(range.HostToken), range.HostTag, address, destination.Length);
        new ReadOnlySpan<byte>((void*)address, destination.Length).CopyTo(destination);
    }

    public PinLease Lease(VsoSendRange range, int offset, int length) =>
        blocks.ForToken(range.HostToken).Lease(PinnedBlockClasses.BlockId(range.HostToken), range.HostTag, range.Address + offset, length);

    public void Acknowledged(VsoSendRange range) => Release(range);

    public void Failed(VsoSendRange range, Exception error) => Release(range);

    private void Release(VsoSendRange range)
    {
        if (_blocks.TryGetValue(range.HostToken, out var block) && block.Block.Generation == range.HostTag)
        {
            if (block.Release())
            {
                _blocks.Remove(range.HostToken);
            }
        }

        output.OnReleased(range.Length);
    }
}
