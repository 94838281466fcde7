using System.Net.NetworkInformation;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>Settings of a simulated point-to-point Ethernet wire between two links.</summary>
public sealed record SimulatedLinkOptions
{
    /// <summary>The IP MTU of both ends. Frames longer than MTU plus the 14-byte Ethernet header are dropped. Default 1500.</summary>
    public int Mtu { get; init; } = 1500;

    /// <summary>One-way propagation delay, the same in both directions (whole microseconds). Default zero.</summary>
    public TimeSpan PropagationDelay { get; init; } = TimeSpan.Zero;

    /// <summary>Hardware address of end A. Default 02:00:00:00:00:01 (locally administered).</summary>
    public PhysicalAddress HardwareAddressA
    {
        get => MacA.ToPhysicalAddress();
        init => MacA = MacAddress.FromPhysicalAddress(value);
    }

    /// <summary>Hardware address of end B. Default 02:00:00:00:00:02 (locally administered).</summary>
    public PhysicalAddress HardwareAddressB
    {
        get => MacB.ToPhysicalAddress();
        init => MacB = MacAddress.FromPhysicalAddress(value);
    }

    internal MacAddress MacA { get; init; } = new(0x0200_0000_0001UL);

    internal MacAddress MacB { get; init; } = new(0x0200_0000_0002UL);

    /// <summary>
    /// The two ends of one such wire, for two stacks (end A for one, end B for the other). Both stacks must run on the
    /// same clock: both in real time, or both on one <see cref="Engine.VirtualTimeDriver"/>.
    /// </summary>
    public (VsoLinkOptions A, VsoLinkOptions B) CreatePair()
    {
        Validate();
        var wire = new SimulatedWire(this);
        return (new SimulatedEndOptions(wire, isA: true), new SimulatedEndOptions(wire, isA: false));
    }

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Mtu, 68, nameof(Mtu)); // RFC 791: every host must take 68-byte datagrams.
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Mtu, 65535 - LinkTime.EthernetHeaderLength, nameof(Mtu));
        ArgumentOutOfRangeException.ThrowIfLessThan(PropagationDelay, TimeSpan.Zero, nameof(PropagationDelay));
    }
}
