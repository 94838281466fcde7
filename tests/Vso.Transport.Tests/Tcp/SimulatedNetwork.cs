using System.Security.Cryptography;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Tcp;

/// <summary>
/// Two stacks joined by a simulated link in virtual time, each side's transmissions optionally through a
/// seeded fault injector. Application code runs inline in the driver's loop, so runs are deterministic.
/// </summary>
internal sealed class SimulatedNetwork : IDisposable
{
    public static readonly Ipv4Address ClientAddress = Ipv4Address.Parse("198.18.0.1");
    public static readonly Ipv4Address ServerAddress = Ipv4Address.Parse("198.18.0.2");

    public SimulatedNetwork(FaultOptions? clientFaults = null, FaultOptions? serverFaults = null, Action<TcpSettings>? configure = null, TimeSpan? delay = null, Action<TcpSettings>? configureServer = null)
    {
        // Continuations must run inline in the loop, not on a captured context.
        SynchronizationContext.SetSynchronizationContext(null);
        Clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreatePair(Clock, new SimulatedLinkOptions { PropagationDelay = delay ?? TimeSpan.FromMilliseconds(5) });
        ClientWire = a;
        ServerWire = b;
        ILink clientLink = clientFaults is null ? a : ClientFaults = new FaultInjector(a, Clock, clientFaults);
        ILink serverLink = serverFaults is null ? b : ServerFaults = new FaultInjector(b, Clock, serverFaults);
        ClientLink = clientLink;
        ServerLink = serverLink;
        Client = new VsoStack(clientLink, Options(ClientAddress, configure), Clock);
        Server = new VsoStack(serverLink, Options(ServerAddress, configureServer ?? configure), Clock);
        Driver = new VirtualTimeDriver(Clock, Client, Server);
    }

    public VirtualClock Clock { get; }

    public SimulatedLink ClientWire { get; }

    public SimulatedLink ServerWire { get; }

    public ILink ClientLink { get; }

    public ILink ServerLink { get; }

    public FaultInjector? ClientFaults { get; }

    public FaultInjector? ServerFaults { get; }

    public VsoStack Client { get; }

    public VsoStack Server { get; }

    public VirtualTimeDriver Driver { get; }

    public bool Run(Func<bool> done, TimeSpan? limit = null) => Driver.RunUntil(done, limit ?? TimeSpan.FromMinutes(10));

    public T Await<T>(Task<T> task, TimeSpan? limit = null)
    {
        Assert.True(Run(() => task.IsCompleted, limit), "The task did not complete in virtual time.");
        return task.GetAwaiter().GetResult();
    }

    public void Await(Task task, TimeSpan? limit = null)
    {
        Assert.True(Run(() => task.IsCompleted, limit), "The task did not complete in virtual time.");
        task.GetAwaiter().GetResult();
    }

    /// <summary>Server listens, client connects; returns both ends.</summary>
    public (VsoConnection Client, VsoConnection Server) Connect(ushort port = 80)
    {
        using var listener = Server.Listen(port);
        var accepted = listener.AcceptAsync().AsTask();
        var connected = Client.ConnectAsync(ServerAddress, port);
        var client = Await(connected);
        var server = Await(accepted);
        return (client, server);
    }

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>Sends all of <paramref name="data"/> in chunks, then shuts down sending.</summary>
    public static async Task SendAllAsync(VsoConnection connection, byte[] data, int chunk)
    {
        var pending = new List<Task>();
        for (var offset = 0; offset < data.Length; offset += chunk)
        {
            pending.Add(connection.SendAsync(data.AsMemory(offset, Math.Min(chunk, data.Length - offset))));

            // Keep at most a few MiB outstanding, like an application with bounded buffers.
            if (pending.Count >= 16)
            {
                await pending[0].ConfigureAwait(false);
                pending.RemoveAt(0);
            }
        }

        foreach (var task in pending)
        {
            await task.ConfigureAwait(false);
        }

        connection.ShutdownSend();
    }

    /// <summary>Reads until end of stream, hashing as it goes; returns (bytes, sha256).</summary>
    public static async Task<(long Length, byte[] Hash)> ReceiveAllAsync(VsoConnection connection)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long total = 0;
        while (true)
        {
            var n = await connection.ReceiveAsync(buffer).ConfigureAwait(false);
            if (n == 0)
            {
                return (total, hash.GetHashAndReset());
            }

            hash.AppendData(buffer, 0, n);
            total += n;
        }
    }

    private static VsoStackOptions Options(Ipv4Address address, Action<TcpSettings>? configure)
    {
        var tcp = new TcpSettings { IsnKey = [1, 2, 3, 4] };
        configure?.Invoke(tcp);
        return new VsoStackOptions { Address = address, PrefixLength = 24, Tcp = tcp, InlineContinuations = true };
    }

    public void Dispose()
    {
        Client.Dispose();
        Server.Dispose();
    }
}
