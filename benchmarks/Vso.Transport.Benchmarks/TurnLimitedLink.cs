using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// Hands the stack at most <c>framesPerTurn</c> frames per turn of its loop (then reports none once, which
/// ends the turn: the stack runs its output and acknowledges). Models a receiver that sees a flight
/// arrive a few frames at a time, as a host reading a NIC queue does, instead of all at one instant as
/// the simulated wire delivers it in virtual time.
/// </summary>
internal sealed class TurnLimitedLink(ILink inner, int framesPerTurn) : ILink
{
    private bool _endTurn;

    public MacAddress HardwareAddress => inner.HardwareAddress;

    public int Mtu => inner.Mtu;

    public long NextEventMicroseconds => inner.NextEventMicroseconds;

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        if (_endTurn)
        {
            _endTurn = false;
            return 0;
        }

        var n = inner.Receive(receiver, Math.Min(maxFrames, framesPerTurn));
        _endTurn = n > 0;
        return n;
    }

    public void Transmit(TransmitBatch batch) => inner.Transmit(batch);

    public bool WaitForFrames(TimeSpan timeout) => inner.WaitForFrames(timeout);

    public void Dispose() => inner.Dispose();
}
