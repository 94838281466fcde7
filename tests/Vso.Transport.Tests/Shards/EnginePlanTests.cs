using System.Net;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;

namespace Vso.Transport.Tests.Shards;

/// <summary>
/// <see cref="VsoStackOptions.Engines"/> checked against the link the stack opens: several engines need a link with one
/// socket or queue per engine in real time (AF_PACKET, TAP, AF_XDP); anything else is refused before a link is opened, with a
/// message that names the key, the value and the fix.
/// </summary>
public sealed class EnginePlanTests
{
    [Fact]
    public void Several_engines_on_a_simulated_wire_are_refused_naming_the_key_the_links_that_have_them_and_the_fix()
    {
        var (a, _) = new SimulatedLinkOptions().CreatePair();
        var error = Assert.Throws<ArgumentException>(() => new VsoStack(a, Options(2), new VirtualTimeDriver()));
        Assert.StartsWith("Engines = 2 is invalid for this link", error.Message, StringComparison.Ordinal);
        Assert.Contains("AF_PACKET", error.Message, StringComparison.Ordinal);
        Assert.Contains("TAP device (one queue per engine)", error.Message, StringComparison.Ordinal);
        Assert.Contains("use 1", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A TAP device's queues are real fds: in virtual time there is nothing to steer, so TAP too is refused there.</summary>
    [Fact]
    public void Several_engines_on_TAP_in_virtual_time_are_refused_before_any_device_is_opened()
    {
        var tap = new TapLinkOptions { Name = "vsonone0", Create = false };
        var error = Assert.Throws<ArgumentException>(() => new VsoStack(tap, Options(2), new VirtualTimeDriver()));
        Assert.StartsWith("Engines = 2 is invalid for this link", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Several_engines_on_AF_XDP_in_virtual_time_are_refused_before_any_socket_is_opened()
    {
        var xdp = new AfXdpLinkOptions { InterfaceName = "vsonone0" };
        var error = Assert.Throws<ArgumentException>(() => new VsoStack(xdp, Options(2), new VirtualTimeDriver()));
        Assert.StartsWith("Engines = 2 is invalid for this link", error.Message, StringComparison.Ordinal);
        Assert.Contains("AF_XDP link (one socket per engine on its own receive queue)", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Each AF_XDP engine serves its own receive queues: Queues must be 1 (one each) or split evenly.</summary>
    [Fact]
    public void AF_XDP_queues_that_the_engines_cannot_share_evenly_are_refused_before_any_socket_is_opened()
    {
        var xdp = new AfXdpLinkOptions { InterfaceName = "vsonone0", Queues = 3 };
        var error = Assert.Throws<ArgumentException>(() => new VsoStack(xdp, Options(2)));
        Assert.StartsWith("Queues = 3 is invalid with Engines = 2: each engine serves its own receive queues, so use 1 (one queue per engine) or a multiple of 2.", error.Message, StringComparison.Ordinal);
    }

    private static VsoStackOptions Options(int engines) => new() { Address = IPAddress.Parse("198.18.0.2"), PrefixLength = 24, Engines = engines };
}
