namespace Vso.MemoryPinning;

/// <summary>
/// Why a descriptor was refused by <see cref="PinnedBlockPool.Validate(int, long, nint, int)"/>. Internal: a host treats
/// every refusal alike (the range is not read, the send fails); the message names the reason for a person.
/// </summary>
internal enum StaleDescriptorReason
{
    /// <summary>The block id was never issued by this pool.</summary>
    UnknownBlock,

    /// <summary>The block was returned to the pool (and may be rented again under a newer generation).</summary>
    Released,

    /// <summary>The block is rented, but under a different generation than the descriptor's.</summary>
    GenerationMismatch,

    /// <summary>The block and generation are current, but the byte range is not inside the block.</summary>
    OutOfRange,
}

/// <summary>
/// A descriptor (block id, generation, address, length) no longer names live pinned memory. The host
/// refuses it without reading any byte of the range (DESIGN.md §2: stale descriptors are refused, never read).
/// </summary>
public sealed class StaleDescriptorException : InvalidOperationException
{
    public StaleDescriptorException()
    {
    }

    public StaleDescriptorException(string message)
        : base(message)
    {
    }

    public StaleDescriptorException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal StaleDescriptorException(StaleDescriptorReason reason, int blockId, long generation, nint address, int length, string message)
        : base(message)
    {
        Reason = reason;
        BlockId = blockId;
        Generation = generation;
        Address = address;
        Length = length;
    }

    internal StaleDescriptorReason Reason { get; }

    public int BlockId { get; }

    public long Generation { get; }

    public nint Address { get; }

    public int Length { get; }
}
