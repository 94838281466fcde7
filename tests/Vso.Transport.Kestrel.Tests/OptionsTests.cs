using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Vso.Transport.Links;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>Options bound from configuration, validated at start with messages naming the key, the value and the fix.</summary>
public sealed class OptionsTests
{
    [Fact]
    public void Defaults_of_the_sample_shape_are_valid()
    {
        var o = new VsoTransportOptions { Backend = VsoBackend.Tap, Interface = "vso0", Address = "198.18.0.2/24" };
        o.Tap.HostAddress = "198.18.0.1/24";
        Assert.Empty(VsoTransportOptionsValidator.Check(o));
    }

    [Theory]
    [InlineData("Address", "198.18.0.2", "Vso:Address = '198.18.0.2' is invalid: give the stack's IPv4 address with its prefix length, such as 198.18.0.2/24")]
    [InlineData("Interface", "", "Vso:Interface = '' is invalid")]
    [InlineData("Gateway", "nope", "Vso:Gateway = 'nope' is invalid: give an IPv4 address")]
    [InlineData("Tap:HostAddress", "198.18.0.1", "Vso:Tap:HostAddress = '198.18.0.1' is invalid")]
    [InlineData("MacAddress", "01:00:00:00:00:01", "Vso:MacAddress = '01:00:00:00:00:01' is invalid: give a unicast MAC")]
    [InlineData("Tcp:MinRto", "00:00:00", "Vso:Tcp:MinRto = '00:00:00' is invalid")]
    [InlineData("Tcp:Backlog", "0", "Vso:Tcp:Backlog = '0' is invalid: use 1 to 65535")]
    [InlineData("Pinning:BlockSize", "3000", "Vso:Pinning:BlockSize = '3000' is invalid: use a power of two")]
    [InlineData("Pinning:MaxBytes", "4096", "Vso:Pinning:MaxBytes = '4096' is invalid: use at least 1048576 bytes")]
    [InlineData("Tcp:Sak", "false", "Vso:Tcp:Sak = 'false' is invalid: there is no such key; did you mean Vso:Tcp:Sack?")]
    [InlineData("DrainTimout", "00:00:10", "Vso:DrainTimout = '00:00:10' is invalid: there is no such key; did you mean Vso:DrainTimeout?")]
    [InlineData("Engines", "-1", "Vso:Engines = '-1' is invalid: use 0 (one engine per processor but one, where the link has a queue for each) or 1 to 64 engine threads")]
    [InlineData("Engines", "65", "Vso:Engines = '65' is invalid: use 0 (one engine per processor but one, where the link has a queue for each) or 1 to 64 engine threads")]
    [InlineData("BusyPollMicroseconds", "5000", "Vso:BusyPollMicroseconds = '5000' is invalid: use 0 (off) to 1000 microseconds")]
    public async Task Bad_values_fail_at_start_naming_key_value_and_fix(string key, string value, string expected)
    {
        var builder = WebApplication.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Vso:Backend"] = "Tap",
            ["Vso:Interface"] = "vso0",
            ["Vso:Address"] = "198.18.0.2/24",
            ["Vso:" + key] = value,
        });
        builder.WebHost.UseVsoTransport();
        builder.WebHost.UseUrls("http://198.18.0.2:8080");
        await using var app = builder.Build();
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("V1", "", "", "00:00:05", "Vso:ProxyProtocolTrustedAddresses = '' is invalid: give the balancers' IPv4 addresses or CIDR ranges")]
    [InlineData("Any", "198.18.0.1, 10.0.0.0/33", "", "00:00:05", "Vso:ProxyProtocolTrustedAddresses = '198.18.0.1, 10.0.0.0/33' is invalid")]
    [InlineData("V2", "10.0.0.0/8", "8080, 0", "00:00:05", "Vso:ProxyProtocolPorts = '8080, 0' is invalid: give ports 1 to 65535")]
    [InlineData("V2", "10.0.0.0/8", "", "00:00:00", "Vso:ProxyProtocolTimeout = '00:00:00' is invalid")]
    [InlineData("None", "10.0.0", "", "00:00:05", "Vso:ProxyProtocolTrustedAddresses = '10.0.0' is invalid")]
    public void Proxy_protocol_keys_are_validated(string mode, string trusted, string ports, string timeout, string expected)
    {
        var o = new VsoTransportOptions { Backend = VsoBackend.Tap, Interface = "vso0", Address = "198.18.0.2/24" };
        o.ProxyProtocol = Enum.Parse<VsoProxyProtocol>(mode);
        o.ProxyProtocolTrustedAddresses = trusted;
        o.ProxyProtocolPorts = ports;
        o.ProxyProtocolTimeout = TimeSpan.Parse(timeout, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Contains(VsoTransportOptionsValidator.Check(o), f => f.StartsWith(expected, StringComparison.Ordinal));

        // The same with every key right is valid.
        o.ProxyProtocolTrustedAddresses = "198.18.0.1, 10.0.0.0/8";
        o.ProxyProtocolPorts = "8080, 8443";
        o.ProxyProtocolTimeout = TimeSpan.FromSeconds(5);
        Assert.Empty(VsoTransportOptionsValidator.Check(o));
    }

    /// <summary>Vso:Engines applies to AfXdp: one socket per engine, each on its own receive queues.</summary>
    [Fact]
    public void Engines_on_AfXdp_serve_a_queue_each()
    {
        var o = new VsoTransportOptions { Backend = VsoBackend.AfXdp, Interface = "veth1", Address = "198.18.0.2/24", Engines = 2 };
        Assert.Equal(2, StackFactory.EngineCount(o));
        Assert.Empty(VsoTransportOptionsValidator.Check(o));
        o.AfXdp.Queues = 4;
        o.AfXdp.RingSize = 1024; // four sockets' frames in the default 64 MiB region
        Assert.Empty(VsoTransportOptionsValidator.Check(o));
        o.AfXdp.RingSize = 2048;

        // Queues that the engines cannot share evenly, and a UMEM too small for a socket per engine, are named.
        o.AfXdp.Queues = 3;
        Assert.Contains(VsoTransportOptionsValidator.Check(o), f => f.StartsWith("Vso:AfXdp:Queues = '3' is invalid: with Engines = 2 each engine serves its own receive queues", StringComparison.Ordinal));
        o.AfXdp.Queues = 1;
        o.AfXdp.UmemBytes = (2L * 2048 * 4096) + (1 << 20);
        Assert.Contains(VsoTransportOptionsValidator.Check(o), f => f.StartsWith("Vso:AfXdp:UmemBytes", StringComparison.Ordinal));
        o.Engines = 1;
        Assert.Empty(VsoTransportOptionsValidator.Check(o));
    }

    [Fact]
    public async Task Unknown_backend_fails_at_start_through_the_validator()
    {
        var builder = WebApplication.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Vso:Backend"] = "Xdp",
            ["Vso:Interface"] = "vso0",
            ["Vso:Address"] = "198.18.0.2/24",
        });
        builder.WebHost.UseVsoTransport();
        await using var app = builder.Build();
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Equal(["Vso:Backend = 'Xdp' is invalid: use AfPacket, Tap or AfXdp."], error.Failures);
    }

    [Fact]
    public async Task Delegate_overload_configures_after_binding()
    {
        var builder = WebApplication.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Vso:Address"] = "10.0.0.2/8" });
        builder.WebHost.UseVsoTransport(o =>
        {
            o.Backend = VsoBackend.Tap;
            o.Interface = "vso9";
        });
        await using var app = builder.Build();
        var o = app.Services.GetRequiredService<IOptions<VsoTransportOptions>>().Value;
        Assert.Equal("10.0.0.2/8", o.Address);
        Assert.Equal("vso9", o.Interface);
        Assert.Equal(VsoBackend.Tap, o.Backend);
        await Task.CompletedTask;
    }

    [RootFact]
    public async Task A_missing_interface_fails_the_bind_naming_backend_and_interface()
    {
        var options = new VsoTransportOptions { Backend = VsoBackend.AfPacket, Interface = "vsonone0", Address = "198.18.0.2/24" };
        using var factory = new VsoTransportFactory(Options.Create(options), Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        var error = await Assert.ThrowsAsync<IOException>(async () => await factory.BindAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("198.18.0.2"), 8080)));
        Assert.Contains("Vso:Backend = 'AfPacket', Vso:Interface = 'vsonone0'", error.Message, StringComparison.Ordinal);
        Assert.IsType<LinkException>(error.InnerException);
        Assert.Equal(0, factory.PinnedBytes);
    }
}
