using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Samples.Echo;

/// <summary>
/// A link that serializes every call through a lock shared with its peer. <see cref="SimulatedLink"/>
/// assumes one thread drives both ends of a pair (as a virtual-time driver does); in real time each
/// stack has its own engine thread, so both ends of the wire share one lock. The lock is reentrant:
/// a stack that transmits while it receives (on its own thread) is fine.
/// </summary>
internal sealed class LockedLink(ILink inner, Lock gate) : ILink
{
    public MacAddress HardwareAddress => inner.HardwareAddress;

    public int Mtu => inner.Mtu;

    public long NextEventMicroseconds
    {
        get
        {
            lock (gate)
            {
                return inner.NextEventMicroseconds;
            }
        }
    }

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        lock (gate)
        {
            return inner.Receive(receiver, maxFrames);
        }
    }

    public void Transmit(TransmitBatch batch)
    {
        lock (gate)
        {
            inner.Transmit(batch);
        }
    }

    public bool WaitForFrames(TimeSpan timeout)
    {
        lock (gate)
        {
            return inner.WaitForFrames(timeout);
        }
    }

    public void Dispose()
    {
        lock (gate)
        {
            inner.Dispose();
        }
    }
}
