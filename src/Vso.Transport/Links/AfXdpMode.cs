namespace Vso.Transport.Links;

/// <summary>How an <see cref="AfXdpLink"/> attaches its XDP program and binds its socket.</summary>
public enum AfXdpMode
{
    /// <summary>
    /// The best the driver offers: native XDP (generic SKB mode if the driver has none), zero-copy if the driver supports
    /// it for AF_XDP, copy mode otherwise; each fallback is logged.
    /// </summary>
    Auto,

    /// <summary>Native XDP and zero-copy (XDP_ZEROCOPY): the device reads and writes the UMEM itself. Fails if the driver cannot.</summary>
    ZeroCopy,

    /// <summary>Native XDP, copy mode (XDP_COPY): the kernel copies each frame between the UMEM and its own buffers.</summary>
    Copy,

    /// <summary>Generic XDP (XDP_FLAGS_SKB_MODE) and copy mode: works on any interface, at the cost of an skb per frame.</summary>
    Skb,
}
