using System.Net;
using System.Net.NetworkInformation;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>A TAP device: the stack is the far end of a virtual wire whose near end is a kernel interface.</summary>
public sealed class TapLinkOptions : VsoLinkOptions
{
    /// <summary>The TAP device's name (required), such as "vso0".</summary>
    public string Name { get; set; } = "";

    /// <summary>
    /// Create the device if it does not exist (needs CAP_NET_ADMIN). A device the link creates is not persistent:
    /// the kernel deletes it when the link is disposed. False: attach to an existing TAP device (one made with
    /// `ip tuntap add dev NAME mode tap`), which must be up.
    /// </summary>
    public bool Create { get; set; }

    /// <summary>MTU to set on the device (null: keep the device's). Default null.</summary>
    public int? Mtu { get; set; }

    /// <summary>An IPv4 address for the kernel's side of the device (null: none), so that the host can reach the stack.</summary>
    public IPAddress? KernelAddress
    {
        get => KernelIpv4?.ToIPAddress();
        set => KernelIpv4 = value is null ? null : Ipv4Address.FromIPAddress(value);
    }

    internal Ipv4Address? KernelIpv4 { get; set; }

    /// <summary>Prefix length of <see cref="KernelAddress"/>. Default 24.</summary>
    public int KernelPrefixLength { get; set; } = 24;

    /// <summary>The stack's MAC on the wire (null: a random locally administered unicast address).</summary>
    public PhysicalAddress? HardwareAddress
    {
        get => Mac?.ToPhysicalAddress();
        set => Mac = value is null ? null : MacAddress.FromPhysicalAddress(value);
    }

    internal MacAddress? Mac { get; set; }

    /// <summary>
    /// Segmentation offload (IFF_VNET_HDR, TUNSETOFFLOAD): the stack writes TCP super-segments of up to 64 KiB that the
    /// kernel takes whole, and the kernel hands the stack frames with checksums left to finish and TSO super-frames,
    /// instead of cutting and summing every segment on both sides. Default true.
    /// </summary>
    public bool SegmentationOffload { get; set; } = true;

    private protected override ILink OpenLink(LinkOpenContext context) =>
        new TapLink(this, context.Queue, context.QueueCount, context.Log, steer: context.QueueCount > 1);

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Name) || Name.Length > 15)
        {
            throw new ArgumentException($"Name = '{Name}' is invalid: give a device name of 1 to 15 characters, such as 'vso0'.", nameof(Name));
        }

        if (Mtu is < 576 or > 65521)
        {
            throw new ArgumentException($"Mtu = {Mtu} is invalid: use 576 to 65521, such as 1500.", nameof(Mtu));
        }

        if (KernelPrefixLength is < 1 or > 31)
        {
            throw new ArgumentException($"KernelPrefixLength = {KernelPrefixLength} is invalid: use 1 to 31, such as 24.", nameof(KernelPrefixLength));
        }

        if (Mac is { } mac && (mac.IsMulticast || mac == MacAddress.Zero))
        {
            throw new ArgumentException($"HardwareAddress = {mac} is invalid: use a unicast address.", nameof(HardwareAddress));
        }
    }
}
