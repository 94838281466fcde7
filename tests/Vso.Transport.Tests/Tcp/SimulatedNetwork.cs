using System.Security.Cryptography;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Tcp;

/// <summary>
/// Two stacks joined by a simulated link in virtual time, each side's transmissions optionally through a
/// seeded fault injector and any further link decorator a test adds. Application code runs inline in the
/// driver's loop, so runs are deterministic.
/// </summary>
internal sealed class SimulatedNetwork : IDisposable
{
    public static readonly Ipv4Address ClientAddress = Ipv4Address.Parse("198.18.0.1");
    public static readonly Ipv4Address ServerAddress = Ipv4Address.Parse("198.18.0.2");

    public SimulatedNetwork(
        FaultOptions? clientFaults = null,
        FaultOptions? serverFaults = null,
        Action<TcpSettings>? configure = null,
        TimeSpan? delay = null,
        Action<TcpSettings>? configureServer = null,
        Func<ILink, ILink>? wrapClientLink = null,
        Func<ILink, ILink>? wrapServerLink = null,
        Action<VsoStackOptions>? configureStack = null)
    {
        // Continuations must run inline in the loop, not on a captured context.
        SynchronizationContext.SetSynchronizationContext(null);
        Clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreatePair(Clock, new SimulatedLinkOptions { PropagationDelay = delay ?? TimeSpan.FromMilliseconds(5) });
        ClientWire = a;
        ServerWire = b;
        ILink clientLink = clientFaults is null ? a : ClientFaults = new FaultInjector(a, Clock, clientFaults);
        ILink serverLink = serverFaults is null ? b : ServerFaults = new FaultInjector(b, Clock, serverFaults);
        ClientLink = wrapClientLink?.Invoke(clientLink) ?? clientLink;
        ServerLink = wrapServerLink?.Invoke(serverLink) ?? serverLink;
        Client = new VsoStack(ClientLink, Options(ClientAddress, configure, configureStack), Clock);
        Server = new VsoStack(ServerLink, Options(ServerAddress, configureServer ?? configure, configureStack), Clock);
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
        return Connect(listener);
    }

    /// <summary>The client connects to a listener the test keeps open.</summary>
    public (VsoConnection Client, VsoConnection Server) Connect(VsoListener listener)
    {
        var accepted = listener.AcceptAsync().AsTask();
        var connected = Client.ConnectAsync(ServerAddress, listener.Port);
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

    /// <summary>Sends all of <paramref name="data"/> in chunks, at most 16 outstanding; then shuts down sending unless told not to.</summary>
    public static async Task SendAllAsync(VsoConnection connection, ReadOnlyMemory<byte> data, int chunk, bool shutdown = true)
    {
        // Keep at most a few MiB outstanding, like an application with bounded buffers.
        var pending = new Queue<Task>();
        for (var offset = 0; offset < data.Length; offset += chunk)
        {
            pending.Enqueue(connection.SendAsync(data.Slice(offset, Math.Min(chunk, data.Length - offset))));
            if (pending.Count >= 16)
            {
                await pending.Dequeue().ConfigureAwait(false);
            }
        }

        // Shut down as soon as the last byte is handed over, as an application that has nothing more to say does:
        // the FIN queues behind the data and can ride on its last segment instead of waiting for every ACK.
        if (shutdown)
        {
            connection.ShutdownSend();
        }

        while (pending.Count > 0)
        {
            await pending.Dequeue().ConfigureAwait(false);
        }
    }

    /// <summary>Reads until end of stream, hashing as it goes; returns (bytes, sha256).</summary>
    public static async Task<(long Length, byte[] Hash)> ReceiveAllAsync(VsoConnection connection, StrongBox<long>? progress = null)
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
            if (progress is not null)
            {
                progress.Value = total;
            }
        }
    }

    private static VsoStackOptions Options(Ipv4Address address, Action<TcpSettings>? configure, Action<VsoStackOptions>? configureStack)
    {
        var tcp = new TcpSettings { IsnKey = [1, 2, 3, 4] };
        configure?.Invoke(tcp);
        var options = new VsoStackOptions { Address = address, PrefixLength = 24, Tcp = tcp, InlineContinuations = true };
        configureStack?.Invoke(options);
        return options;
    }

    public void Dispose()
    {
        Client.Dispose();
        Server.Dispose();
    }
}

/// <summary>A mutable box for progress shared with an async method.</summary>
internal sealed class StrongBox<T>
{
    public T Value { get; set; } = default!;
}
