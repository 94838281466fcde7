using Vso.MemoryPinning;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>An AF_XDP socket on one queue of an interface, with its own XDP program. Defaults suit a veth or a 1–10 GbE NIC.</summary>
public sealed class AfXdpLinkOptions : VsoLinkOptions
{
    /// <summary>The interface to bind to (required). It must exist and be up.</summary>
    public string InterfaceName { get; set; } = "";

    /// <summary>
    /// The stack's IPv4 address: the XDP program hands the socket only ARP for this address and IPv4 addressed to it;
    /// every other frame goes to the kernel as before. Set from the stack's own address when the stack opens the link.
    /// </summary>
    internal Ipv4Address Address { get; set; }

    /// <summary>
    /// The receive queue to bind to. Default 0. It must exist (`ethtool -l DEV`). The link sees only frames that arrive on
    /// this queue: on a multi-queue NIC give the interface one queue or steer the stack's traffic to it (ethtool -N).
    /// </summary>
    public int Queue { get; set; }

    /// <summary>Native or generic XDP, zero-copy or copy. Default <see cref="AfXdpMode.Auto"/>.</summary>
    public AfXdpMode Mode { get; set; } = AfXdpMode.Auto;

    /// <summary>
    /// Entries of each of the four rings (a power of two), and frames of the UMEM per direction: the UMEM holds
    /// 2 × RingSize frames of <see cref="FrameSize"/> bytes (16 MiB by default), pinned by the kernel. Default 2048.
    /// </summary>
    public int RingSize { get; set; } = 2048;

    /// <summary>Bytes per UMEM frame: 2048 or 4096 (default; a page, which holds an MTU of up to 3,500 or so with the kernel's headroom).</summary>
    public int FrameSize { get; set; } = 4096;

    /// <summary>
    /// A pinned block pool made with <see cref="PinnedBlockPoolOptions.ContiguousBytes"/>, or null (default: a private UMEM).
    /// The UMEM then covers the pool's contiguous region, the link's own frames are blocks rented from it, and a frame
    /// whose payload lies in the region (a block the application wrote, identified in Pinned mode) is sent in place:
    /// the kernel or device reads the application's bytes where they are (multi-buffer AF_XDP, XDP_USE_SG). The pool must
    /// outlive the link, and its blocks must be at least <see cref="FrameSize"/> bytes.
    /// </summary>
    public PinnedBlockPool? UmemPool { get; set; }

    /// <summary>
    /// Receive queues served, one AF_XDP socket each, from <see cref="Queue"/> on. Default 1. The XDP program hands each
    /// socket the stack's frames that arrive on its queue. A stack of several engines (<see cref="Api.VsoStackOptions.Engines"/>)
    /// gives each engine its own: engine k serves queue <see cref="Queue"/> + k when this is 1, else this divided by the
    /// engines, in order (it must then be a multiple of the engines).
    /// </summary>
    public int Queues { get; set; } = 1;

    private protected override ILink OpenLink(LinkOpenContext context)
    {
        var options = (AfXdpLinkOptions)MemberwiseClone();
        options.Address = context.Address;
        if (context.QueueCount == 1)
        {
            return new AfXdpLink(options, context.Log);
        }

        // Several engines: each serves its own receive queues (an xsk receives only from the queue it is bound to), as many
        // as Queues gives it (VsoStack checked it is 1 or a multiple), at least one; they share the XDP program and XSKMAP.
        options.Queues = Math.Max(Queues, context.QueueCount);
        return AfXdpLink.OpenShard(options, context.Queue, context.QueueCount, context.Log);
    }

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(InterfaceName) || InterfaceName.Length > 15)
        {
            throw new ArgumentException($"InterfaceName = '{InterfaceName}' is invalid: give the name of an interface (1 to 15 characters), such as 'veth1'.", nameof(InterfaceName));
        }

        if (Address == Ipv4Address.Any)
        {
            throw new ArgumentException("Address is required: the stack's IPv4 address, which the XDP program matches.", nameof(Address));
        }

        if (Queue is < 0 or > 65535)
        {
            throw new ArgumentException($"Queue = {Queue} is invalid: use a receive queue index of 0 to 65535 (`ethtool -l DEV` lists them).", nameof(Queue));
        }

        if (!Enum.IsDefined(Mode))
        {
            throw new ArgumentException($"Mode = {Mode} is invalid: use Auto, ZeroCopy, Copy or Skb.", nameof(Mode));
        }

        if (RingSize is < 64 or > 32768 || (RingSize & (RingSize - 1)) != 0)
        {
            throw new ArgumentException($"RingSize = {RingSize} is invalid: use a power of two from 64 to 32768, such as 2048.", nameof(RingSize));
        }

        if (FrameSize is not (2048 or 4096))
        {
            throw new ArgumentException($"FrameSize = {FrameSize} is invalid: use 2048 or 4096.", nameof(FrameSize));
        }

        if (UmemPool is { } pool && (pool.ContiguousRegion.Length == 0 || pool.BlockSize < FrameSize))
        {
            throw new ArgumentException(
                $"UmemPool is invalid: the pool needs a contiguous region (PinnedBlockPoolOptions.ContiguousBytes > 0, it has {pool.ContiguousRegion.Length}) and blocks of at least FrameSize = {FrameSize} bytes (it has {pool.BlockSize}).",
                nameof(UmemPool));
        }

        if (Queues < 1 || Queue + Queues > 65536)
        {
            throw new ArgumentException($"Queues = {Queues} is invalid: use 1 or more, Queue + Queues - 1 being a receive queue of the interface.", nameof(Queues));
        }
    }
}
