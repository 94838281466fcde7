using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// A stack's end of a wire whose frames may be longer than the MTU the stack is told: what a link with receive
/// offload (GRO/LRO) hands up, several segments coalesced into one. The stack sizes its own segments and its MSS
/// option by <see cref="Mtu"/>; the wire underneath carries the peer's longer frames.
/// </summary>
internal sealed class CoalescingLink(SimulatedLink wire, int mtu) : ILink
{
    public MacAddress HardwareAddress => wire.HardwareAddress;

    public int Mtu => mtu;

    public long NextEventMicroseconds => wire.NextEventMicroseconds;

    public int Receive(IFrameReceiver receiver, int maxFrames) => wire.Receive(receiver, maxFrames);

    public void Transmit(TransmitBatch batch) => wire.Transmit(batch);

    public bool WaitForFrames(TimeSpan timeout) => wire.WaitForFrames(timeout);

    public void Dispose() => wire.Dispose();
}
