using Vso.MemoryPinning;

namespace Vso.Transport.Api;

/// <summary>
/// The owner of the bytes an embedding queues on a <see cref="VsoConnectionEndpoint"/> (DESIGN.md §2). The sender asks
/// it for a range's bytes each time it (re)transmits them and tells it when they are acknowledged. The host validates
/// every range it is handed and refuses a stale one (memory already released) with a
/// <see cref="StaleDescriptorException"/> instead of reading it. Called on the engine thread only.
/// </summary>
public interface IVsoSendHost
{
    /// <summary>Identify mode Copy: copy <c>destination.Length</c> bytes from <paramref name="offset"/> within the range.</summary>
    void CopyTo(VsoSendRange range, int offset, Span<byte> destination);

    /// <summary>Identify mode Pinned: lease the bytes so the link can gather from them; the lease ends once the frame has left.</summary>
    PinLease Lease(VsoSendRange range, int offset, int length);

    /// <summary>The peer acknowledged every byte of the range: its memory may be released.</summary>
    void Acknowledged(VsoSendRange range);

    /// <summary>The connection can no longer deliver the range's bytes; the application must be told.</summary>
    void Failed(VsoSendRange range, Exception error);
}
