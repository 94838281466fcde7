namespace Vso.Transport.Links;

/// <summary>
/// The PACKET_MMAP receive ring of an <see cref="AfPacketLink"/> (packet(7), the kernel's Documentation/networking/packet_mmap.rst).
/// </summary>
internal enum AfPacketReceiveRing
{
    /// <summary>
    /// TPACKET_V2: fixed-size slots, one frame each; the kernel hands each frame over and wakes the link as soon as it
    /// is written. For latency: round trips over a veth stay in the tens of microseconds.
    /// </summary>
    V2,

    /// <summary>
    /// TPACKET_V3: frames packed into blocks; the kernel hands a block over when it is full or after
    /// <see cref="AfPacketLinkOptions.BlockTimeoutMilliseconds"/>. Batches more frames per wake-up, but on a link that
    /// does not fill blocks quickly every frame waits up to that timeout, which TCP measures as round-trip time.
    /// </summary>
    V3,
}

/// <summary>An AF_PACKET socket on an interface (packet(7)). Defaults suit a veth or a 1–10 GbE NIC.</summary>
public sealed class AfPacketLinkOptions : VsoLinkOptions
{
    /// <summary>The interface to bind to (required). It must exist, be up, and have no kernel IPv4 address the stack uses.</summary>
    public string InterfaceName { get; set; } = "";

    /// <summary>
    /// The receive ring. Default <see cref="AfPacketReceiveRing.V2"/>, for latency; <see cref="AfPacketReceiveRing.V3"/>
    /// batches more frames per wake-up at up to <see cref="BlockTimeoutMilliseconds"/> of delay per frame.
    /// </summary>
    internal AfPacketReceiveRing ReceiveRing { get; set; } = AfPacketReceiveRing.V2;

    /// <summary>
    /// Bytes per receive block (a power of two, a multiple of the page size). Default 256 KiB. With V2 a block holds
    /// whole fixed-size frame slots (2048 bytes for MTU 1500: a power of two that holds the MTU and the ring's headers).
    /// </summary>
    public int BlockSize { get; set; } = 1 << 18;

    /// <summary>Blocks in the receive ring. Default 64 (16 MiB of ring with the default block size: 8192 frames with V2 at MTU 1500).</summary>
    public int BlockCount { get; set; } = 64;

    /// <summary>
    /// V3 only: how long the kernel keeps a block that is not full before handing it over, in milliseconds. A block
    /// is handed over at once when full; this bounds the latency of a lightly loaded link. Default 1 (the minimum).
    /// </summary>
    public int BlockTimeoutMilliseconds { get; set; } = 1;

    /// <summary>Send straight to the driver, skipping the interface's queueing discipline (PACKET_QDISC_BYPASS). Default false.</summary>
    public bool QdiscBypass { get; set; }

    /// <summary>
    /// Generic segmentation offload (PACKET_VNET_HDR): the stack hands the socket TCP super-segments of up to 64 KiB with a
    /// virtio_net_hdr, and the kernel cuts them into MSS-sized frames (in software when the device has no TSO, as for its
    /// own TCP), so one message and one pass through the device layer carry up to 45 segments instead of one.
    /// Default true. Turn it off for a device whose driver refuses GSO frames from packet sockets.
    /// </summary>
    public bool SegmentationOffload { get; set; } = true;

    /// <summary>SO_SNDBUF of the socket (forced as root). Default 4 MiB.</summary>
    public int SendBufferSize { get; set; } = 4 << 20;

    /// <summary>
    /// A classic BPF filter on the socket keeps from the stack, in the kernel, the IPv4 frames it would only drop: those
    /// not addressed to the stack and, when the stack has no gateway, those from off-subnet sources (so a flood aimed
    /// elsewhere, or spoofed from anywhere, costs the stack nothing). ARP always passes. Frames the kernel drops are not
    /// counted by the stack. Default true.
    /// </summary>
    public bool KernelFilter { get; set; } = true;

    /// <summary>The address the kernel filter passes IPv4 frames to; null: no filter. Set by <see cref="OpenLink"/>.</summary>
    internal Wire.Ipv4Address? FilterAddress { get; set; }

    /// <summary>With <see cref="FilterAddress"/>: sources outside FilterAddress/this prefix length are dropped too; 0: any source.</summary>
    internal int FilterOnLinkPrefixLength { get; set; }

    private protected override ILink OpenLink(LinkOpenContext context)
    {
        var options = (AfPacketLinkOptions)MemberwiseClone();
        options.FanoutGroup = context.FanoutGroup;
        if (KernelFilter)
        {
            // Without a gateway the stack answers no off-subnet peer: the kernel may drop those frames for it.
            options.FilterAddress = context.Address;
            options.FilterOnLinkPrefixLength = context.Gateway == Wire.Ipv4Address.Any ? context.PrefixLength : 0;
        }

        return new AfPacketLink(options, context.Log);
    }

    /// <summary>
    /// Set from <see cref="LinkOpenContext.FanoutGroup"/> by a stack of several shards: the PACKET_FANOUT group (per network namespace) that this socket joins, one socket
    /// per shard in shard order, with <see cref="FanoutProgram"/> choosing the socket of each frame. 0: no group.
    /// </summary>
    internal ushort FanoutGroup { get; set; }

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(InterfaceName) || InterfaceName.Length > 15)
        {
            throw new ArgumentException($"InterfaceName = '{InterfaceName}' is invalid: give the name of an interface (1 to 15 characters), such as 'veth1'.", nameof(InterfaceName));
        }

        if (!Enum.IsDefined(ReceiveRing))
        {
            throw new ArgumentException($"ReceiveRing = {ReceiveRing} is invalid: use V2 (latency) or V3 (batching).", nameof(ReceiveRing));
        }

        if (FilterOnLinkPrefixLength is < 0 or > 32)
        {
            throw new ArgumentException($"FilterOnLinkPrefixLength = {FilterOnLinkPrefixLength} is invalid: use 0 (any source) to 32.", nameof(FilterOnLinkPrefixLength));
        }

        if (BlockSize < 4096 || (BlockSize & (BlockSize - 1)) != 0)
        {
            throw new ArgumentException($"BlockSize = {BlockSize} is invalid: use a power of two of at least 4096, such as 262144.", nameof(BlockSize));
        }

        if (BlockCount is < 2 or > 65536)
        {
            throw new ArgumentException($"BlockCount = {BlockCount} is invalid: use 2 to 65536, such as 64.", nameof(BlockCount));
        }

        if (BlockTimeoutMilliseconds is < 1 or > 1000)
        {
            throw new ArgumentException($"BlockTimeoutMilliseconds = {BlockTimeoutMilliseconds} is invalid: use 1 to 1000.", nameof(BlockTimeoutMilliseconds));
        }

        if (SendBufferSize < 65536)
        {
            throw new ArgumentException($"SendBufferSize = {SendBufferSize} is invalid: use at least 65536.", nameof(SendBufferSize));
        }
    }
}
