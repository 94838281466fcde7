using System.Reflection;
using System.Runtime.CompilerServices;
using Vso.MemoryPinning;
using Vso.Transport.Api;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// The public surface of the three shipped assemblies, counted by reflection (nested types included), as a ratchet:
/// a new public type has to lower another or raise the bound here on purpose. Here rather than in Vso.Transport.Tests
/// because this project references all three.
/// </summary>
public sealed class PublicSurfaceTests
{
    /// <summary>
    /// Issue 9's bound. What stays public: the stack and its options, connections and listeners; the engine-facing
    /// endpoint the Kestrel transport builds on (VsoConnectionEndpoint, VsoEndpointListener, IVsoSendHost,
    /// IVsoEndpointObserver, VsoSendRange); link descriptions (VsoLinkOptions and one per backend, which the stack opens
    /// itself, so the frame-level link seam is internal); the virtual-time driver; the recovery and congestion-control
    /// plug-in point; the pinned block pool; the Kestrel options with their sections and enums (configuration keys).
    /// Addresses are the BCL's IPAddress and PhysicalAddress.
    /// </summary>
    private const int MaxPublicTypes = 50;

    private static readonly Assembly[] Shipped =
    [
        typeof(PinnedBlockPool).Assembly,
        typeof(VsoStack).Assembly,
        typeof(VsoTransportOptions).Assembly,
    ];

    [Fact]
    public void The_three_assemblies_export_at_most_the_bound()
    {
        var exported = Shipped.SelectMany(a => a.GetExportedTypes()).Select(t => t.FullName!).Order(StringComparer.Ordinal).ToList();
        Assert.True(
            exported.Count <= MaxPublicTypes,
            $"{exported.Count} public types, the bound is {MaxPublicTypes}:\n" + string.Join('\n', exported));
    }

    [Theory]
    [InlineData(typeof(PinnedBlockPool), "Vso.MemoryPinning.PinningMetrics")]
    [InlineData(typeof(PinnedBlockPool), "Vso.MemoryPinning.StaleDescriptorReason")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Tcp.Recovery.SackScoreboard")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Tcp.Recovery.SackScoreboard+Record")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Links.PcapWriter")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Engine.SystemClock")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Engine.VirtualClock")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Links.ILink")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Links.TransmitBatch")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Links.GatherSegment")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Links.AfPacketLink")]
    [InlineData(typeof(VsoStack), "Vso.Transport.Wire.Ipv4Address")]
    public void Types_a_user_cannot_use_correctly_exist_but_are_not_public(Type inAssemblyOf, string fullName)
    {
        var type = inAssemblyOf.Assembly.GetType(fullName);
        Assert.NotNull(type); // renamed or moved: update this list rather than lose the check
        Assert.False(type.IsVisible, $"{fullName} is public again");
    }

    [Fact]
    public void The_Kestrel_transport_sees_no_internals_of_the_stack()
    {
        var granted = typeof(VsoStack).Assembly.GetCustomAttributes<InternalsVisibleToAttribute>()
            .Concat(typeof(PinnedBlockPool).Assembly.GetCustomAttributes<InternalsVisibleToAttribute>())
            .Select(a => a.AssemblyName)
            .ToList();
        Assert.DoesNotContain(typeof(VsoTransportOptions).Assembly.GetName().Name, granted);
    }
}
