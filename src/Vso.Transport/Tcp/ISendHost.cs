using Vso.MemoryPinning;

namespace Vso.Transport.Tcp;

/// <summary>
/// The owner of the bytes behind <see cref="SendDescriptor"/>s (DESIGN.md §2). The sender asks it for a
/// descriptor's bytes each time it (re)transmits them and tells it when they are acknowledged. The host
/// validates every descriptor it is handed and refuses a stale one (memory already released) with an
/// exception instead of reading it. Called on the engine thread only.
/// </summary>
internal interface ISendHost
{
    /// <summary>Identify mode Copy: copy <c>destination.Length</c> bytes from <paramref name="offset"/> within the descriptor.</summary>
    void CopyTo(SendDescriptor descriptor, int offset, Span<byte> destination);

    /// <summary>Identify mode Pinned: lease the range so the link can gather from it; the lease ends once the frame has left.</summary>
    PinLease Lease(SendDescriptor descriptor, int offset, int length);

    /// <summary>The peer acknowledged every byte of the descriptor: its memory may be released.</summary>
    void Acknowledged(SendDescriptor descriptor);

    /// <summary>The connection can no longer deliver the descriptor's bytes; the application must be told.</summary>
    void Failed(SendDescriptor descriptor, Exception error);
}
