namespace Vso.Transport.Api;

/// <summary>
/// A read-only view of one queued send descriptor, as the TCP sender hands it back to its <see cref="IVsoSendHost"/>:
/// where the bytes are, how many, and the two words the host gave when it queued them
/// (<see cref="VsoConnectionEndpoint.Enqueue"/>), which the sender never reads.
/// </summary>
/// <param name="Address">Address of the first byte, inside memory the host keeps pinned until acknowledged.</param>
/// <param name="Length">Bytes in the range.</param>
/// <param name="HostToken">The host's identification of the memory (a block id, a registration slot).</param>
/// <param name="HostTag">A second host word (the block's generation, the slot's generation).</param>
public readonly record struct VsoSendRange(nint Address, int Length, long HostToken, long HostTag);
