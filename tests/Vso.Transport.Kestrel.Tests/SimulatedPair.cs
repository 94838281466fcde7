using Microsoft.Extensions.Logging.Abstractions;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// Two stacks on a <see cref="SimulatedLink"/> in real time (each with its own engine thread): the server stack is
/// built by a <see cref="VsoTransportFactory"/> as Kestrel would, the client is a plain <see cref="VsoStack"/>.
/// </summary>
internal sealed class SimulatedPair : IDisposable
{
    public const string ServerAddress = "198.18.0.2";
    public const string ClientAddress = "198.18.0.1";

    private SimulatedPair(VsoTransportFactory factory, VsoStack client)
    {
        Factory = factory;
        Client = client;
    }

    public VsoTransportFactory Factory { get; }

    public VsoStack Client { get; }

    public static VsoTransportOptions DefaultOptions() => new()
    {
        Backend = VsoBackend.Tap,
        Interface = "sim0",
        Address = ServerAddress + "/24",
    };

    public static SimulatedPair Create(VsoTransportOptions? options = null)
    {
        options ??= DefaultOptions();
        var clock = SystemClock.Instance;
        var (a, b) = SimulatedLink.CreatePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMicroseconds(50) });
        var client = new VsoStack(a, new VsoStackOptions { Address = Ipv4Address.Parse(ClientAddress), PrefixLength = 24, Tcp = new Tcp.TcpSettings { Nagle = false } }, clock);
        client.Start();
        var factory = new VsoTransportFactory(
            options,
            () => new VsoStack(b, StackFactory.ToStackOptions(options), clock),
            NullLoggerFactory.Instance);
        return new SimulatedPair(factory, client);
    }

    public void Dispose()
    {
        Client.Dispose();
        Factory.Dispose();
    }
}
