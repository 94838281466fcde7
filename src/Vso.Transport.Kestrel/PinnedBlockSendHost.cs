using Vso.MemoryPinning;
using Vso.Transport.Api;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The send host of one connection (DESIGN.md §2): the bytes behind its queued ranges live in blocks of the pinned
/// pool, which <see cref="VsoOutputWriter"/> filled. A range names its block by id and generation, so every read and
/// lease is checked against the pool and a stale range (block already released) is refused before any byte is read.
/// It holds one block reference per queued range and gives the writer its credit back when a range is acknowledged
/// or failed. Engine thread only.
/// </summary>
internal sealed class PinnedBlockSendHost(PinnedBlockPool pool, VsoOutputWriter output) : IVsoSendHost
{
    private readonly Dictionary<int, BlockRef> _blocks = [];

    /// <summary>A range of <paramref name="block"/> is about to be queued; its reference is released on acknowledgment.</summary>
    public void Track(BlockRef block) => _blocks[block.Block.Id] = block;

    public unsafe void CopyTo(VsoSendRange range, int offset, Span<byte> destination)
    {
        // Validate refuses a range whose block was released (StaleDescriptorException) before any byte is read.
        var address = range.Address + offset;
        _ = pool.Validate((int)range.HostToken, range.HostTag, address, destination.Length);
        new ReadOnlySpan<byte>((void*)address, destination.Length).CopyTo(destination);
    }

    public PinLease Lease(VsoSendRange range, int offset, int length) =>
        pool.Lease((int)range.HostToken, range.HostTag, range.Address + offset, length);

    public void Acknowledged(VsoSendRange range) => Release(range);

    public void Failed(VsoSendRange range, Exception error) => Release(range);

    private void Release(VsoSendRange range)
    {
        var id = (int)range.HostToken;
        if (_blocks.TryGetValue(id, out var block) && block.Block.Generation == range.HostTag)
        {
            if (block.Release())
            {
                _blocks.Remove(id);
            }
        }

        output.OnReleased(range.Length);
    }
}
