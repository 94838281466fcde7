using Microsoft.Extensions.Logging;
using Vso.Transport.Engine;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// Which link a <see cref="Api.VsoStack"/> puts its frames on, and how: <see cref="AfPacketLinkOptions"/>,
/// <see cref="AfXdpLinkOptions"/>, <see cref="TapLinkOptions"/>, or one end of a simulated wire
/// (<see cref="SimulatedLinkOptions.CreatePair"/>). The stack opens the link itself and closes it when disposed, so the
/// link's frame-level interface stays inside the stack.
/// </summary>
public abstract class VsoLinkOptions
{
    // Only this assembly's links can be opened: the frame interface they implement is not public.
    private protected VsoLinkOptions()
    {
    }

    /// <summary>When set, every frame the link sends or receives is also written to this pcap file. Default null.</summary>
    public string? CapturePath { get; set; }

    /// <summary>
    /// When set, frames are lost, delayed, reordered, duplicated or corrupted on receive and on send as these options say
    /// (seeded, so a run repeats). For tests of an application under impairment. Default null.
    /// </summary>
    public FaultOptions? Faults { get; set; }

    /// <summary>Opens the link with the capture and fault layers these options ask for.</summary>
    internal ILink Open(LinkOpenContext context)
    {
        var link = OpenLink(context);
        try
        {
            if (Faults is { } faults)
            {
                link = new FaultInjector(link, context.Clock, faults);
            }

            if (!string.IsNullOrWhiteSpace(CapturePath))
            {
                link = new CapturingLink(link, CapturePath);
            }

            return link;
        }
        catch
        {
            link.Dispose();
            throw;
        }
    }

    /// <summary>Opens the bare link.</summary>
    private protected abstract ILink OpenLink(LinkOpenContext context);
}

/// <summary>What a link needs from the stack that opens it.</summary>
/// <param name="FanoutGroup">The PACKET_FANOUT group an AF_PACKET link joins, one socket per shard; 0: none.</param>
/// <param name="Queue">The shard this link is opened for: the queue of a multi-queue TAP device it opens; an AF_XDP link serves that shard's receive queues.</param>
/// <param name="QueueCount">The stack's shards, one queue each; above 1 the TAP link steers the kernel's flows to their shards.</param>
internal readonly record struct LinkOpenContext(Ipv4Address Address, int PrefixLength, Ipv4Address Gateway, IClock Clock, ILogger Log, ushort FanoutGroup = 0, int Queue = 0, int QueueCount = 1);
