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

    /// <param name="options">The server's transport options; <see cref="DefaultOptions"/> when null.</param>
    /// <param name="wire">The wire; 50 µs of propagation delay when null.</param>
    /// <param name="serverFaults">Faults on what the server sends (seeded), none when null.</param>
    public static SimulatedPair Create(VsoTransportOptions? options = null, SimulatedLinkOptions? wire = null, FaultOptions? serverFaults = null)
    {
        options ??= DefaultOptions();
        var clock = SystemClock.Instance;
        var (a, simulated) = SimulatedLink.CreatePair(clock, wire ?? new SimulatedLinkOptions { PropagationDelay = TimeSpan.FromMicroseconds(50) });
        ILink b = serverFaults is null ? simulated : new FaultInjector(simulated, clock, serverFaults);
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

    /// <summary>Polls <paramref name="condition"/> in real time, for tests that run a real Kestrel host.</summary>
    internal static async Task WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for: {what}");
            }

            await Task.Delay(20);
        }
    }
}
