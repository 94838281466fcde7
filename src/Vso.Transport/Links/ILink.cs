using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// Moves Ethernet II frames (no preamble, no FCS) between the stack and a medium, in batches.
/// A link is driven by one engine thread; it is not thread-safe.
/// </summary>
internal interface ILink : IDisposable
{
    /// <summary>The link's hardware address, the source of every frame the stack sends.</summary>
    MacAddress HardwareAddress { get; }

    /// <summary>The IP MTU: the largest IPv4 packet (header included) a frame may carry.</summary>
    int Mtu { get; }

    /// <summary>
    /// Hands up to <paramref name="maxFrames"/> frames that have arrived to <paramref name="receiver"/>,
    /// one call each, and returns how many. Never blocks. The span is valid only during the call.
    /// </summary>
    int Receive(IFrameReceiver receiver, int maxFrames);

    /// <summary>
    /// Sends every frame of the batch. When this returns, the link no longer reads the batch nor any
    /// gathered address: the engine may end the pin leases behind them.
    /// </summary>
    void Transmit(TransmitBatch batch);

    /// <summary>
    /// The time (the engine clock's microseconds) at which this link next has a frame to deliver that it
    /// holds itself (simulated wire, injected delay), or <see cref="long.MaxValue"/> if none or unknown.
    /// Lets a virtual-time driver jump straight to the next event.
    /// </summary>
    long NextEventMicroseconds { get; }

    /// <summary>
    /// Blocks up to <paramref name="timeout"/> (negative: no limit) until a frame may be ready or <see cref="Interrupt"/>
    /// is called. Simulated links return at once.
    /// </summary>
    bool WaitForFrames(TimeSpan timeout);

    /// <summary>
    /// Whether <see cref="WaitForFrames"/> really blocks until a frame arrives or <see cref="Interrupt"/> is called
    /// (real links: poll(2) on the link's descriptor plus an eventfd). The engine thread then sleeps in the link.
    /// </summary>
    bool CanBlock => false;

    /// <summary>
    /// Generic segmentation offload: the largest TCP payload one frame of a <see cref="TransmitBatch"/> may carry as a
    /// super-segment (<see cref="TransmitBatch.GsoSize"/>), which the link has cut into MSS-sized segments on the way out
    /// (AF_PACKET: a virtio_net_hdr with VIRTIO_NET_HDR_GSO_TCPV4, segmented by the kernel as for its own TCP).
    /// 0 (default): every frame fits the MTU.
    /// </summary>
    int MaxOffloadPayload => 0;

    /// <summary>Thread-safe: makes a <see cref="WaitForFrames"/> in progress, or the next one, return at once.</summary>
    void Interrupt()
    {
    }

    /// <summary>The link's frame counts for the meter; a decorator forwards its inner link's.</summary>
    ILinkCounters? Counters => this as ILinkCounters;
}
