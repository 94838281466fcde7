using System.Security.Cryptography;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Robustness;

/// <summary>
/// Two stacks on a simulated wire in virtual time, each behind a <see cref="ProbeLink"/> (which can cut the
/// wire and checks that leased bytes are exactly the bytes gathered into frames), the server's link optionally
/// behind a <see cref="FrameInjectingLink"/>. Application code runs inline in the driver's loop: deterministic.
/// </summary>
internal sealed class RobustNet : IDisposable
{
    public static readonly Ipv4Address ClientAddress = Ipv4Address.Parse("198.18.0.1");
    public static readonly Ipv4Address ServerAddress = Ipv4Address.Parse("198.18.0.2");

    public RobustNet(Action<VsoStackOptions>? configure = null, bool injector = false, TimeSpan? delay = null)
    {
        SynchronizationContext.SetSynchronizationContext(null);
        Clock = new VirtualClock();
        var (a, b) = SimulatedLink.CreatePair(Clock, new SimulatedLinkOptions { PropagationDelay = delay ?? TimeSpan.FromMilliseconds(2) });
        ClientWire = a;
        ServerWire = b;
        ClientProbe = new ProbeLink(a);
        ServerProbe = new ProbeLink(b);
        ILink serverLink = ServerProbe;
        if (injector)
        {
            Injector = new FrameInjectingLink(ServerProbe);
            serverLink = Injector;
        }

        Client = new VsoStack(ClientProbe, Options(ClientAddress, configure), Clock);
        Server = new VsoStack(serverLink, Options(ServerAddress, configure), Clock);
        ClientProbe.Stack = Client;
        ServerProbe.Stack = Server;
        Driver = new VirtualTimeDriver(Clock, Client, Server);
    }

    public VirtualClock Clock { get; }

    public SimulatedLink ClientWire { get; }

    public SimulatedLink ServerWire { get; }

    public ProbeLink ClientProbe { get; }

    public ProbeLink ServerProbe { get; }

    public FrameInjectingLink? Injector { get; }

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

    /// <summary>The server listens on <paramref name="port"/> (listener kept open) and the client connects.</summary>
    public (VsoConnection Client, VsoConnection Server) Connect(VsoListener listener)
    {
        var accepted = listener.AcceptAsync().AsTask();
        var connected = Client.ConnectAsync(ServerAddress, listener.Port);
        var client = Await(connected);
        var server = Await(accepted);
        return (client, server);
    }

    public (VsoConnection Client, VsoConnection Server) Connect(ushort port = 80)
    {
        using var listener = Server.Listen(port);
        return Connect(listener);
    }

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>Sends <paramref name="data"/> in chunks, at most 16 outstanding; then shuts down sending unless told not to.</summary>
    public static async Task SendAllAsync(VsoConnection connection, ReadOnlyMemory<byte> data, int chunk, bool shutdown = true)
    {
        var pending = new Queue<Task>();
        for (var offset = 0; offset < data.Length; offset += chunk)
        {
            pending.Enqueue(connection.SendAsync(data.Slice(offset, Math.Min(chunk, data.Length - offset))));
            if (pending.Count >= 16)
            {
                await pending.Dequeue().ConfigureAwait(false);
            }
        }

        while (pending.Count > 0)
        {
            await pending.Dequeue().ConfigureAwait(false);
        }

        if (shutdown)
        {
            connection.ShutdownSend();
        }
    }

    /// <summary>Reads until end of stream, hashing; returns (bytes, sha256).</summary>
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

    private static VsoStackOptions Options(Ipv4Address address, Action<VsoStackOptions>? configure)
    {
        var options = new VsoStackOptions { Address = address, PrefixLength = 24, Tcp = new TcpSettings { IsnKey = [5, 6, 7, 8] }, InlineContinuations = true };
        configure?.Invoke(options);
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

/// <summary>
/// Passes frames through, can cut the wire (<see cref="Down"/>: transmissions vanish), and at every transmit
/// checks the stack's invariant that the bytes under lease are exactly the bytes gathered into the batch's frames.
/// </summary>
internal sealed class ProbeLink(ILink inner) : ILink
{
    public VsoStack? Stack { get; set; }

    public bool Down { get; set; }

    public long MaxLeasedBytes { get; private set; }

    public long MaxPinnedBytes { get; private set; }

    public long MaxLockedBytes { get; private set; }

    public long GatheredBytes { get; private set; }

    /// <summary>Transmits where leased bytes differed from gathered bytes (should stay 0 unless a frame was cancelled).</summary>
    public long LeaseMismatches { get; private set; }

    public long FramesTransmitted { get; private set; }

    public MacAddress HardwareAddress => inner.HardwareAddress;

    public int Mtu => inner.Mtu;

    public long NextEventMicroseconds => inner.NextEventMicroseconds;

    public int Receive(IFrameReceiver receiver, int maxFrames) => inner.Receive(receiver, maxFrames);

    public void Transmit(TransmitBatch batch)
    {
        long gathered = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            foreach (var g in batch.Gathers(i))
            {
                gathered += g.Length;
            }
        }

        FramesTransmitted += batch.Count;
        GatheredBytes += gathered;
        if (Stack is { } stack)
        {
            var leased = stack.LeasedBytes;
            if (leased != gathered)
            {
                LeaseMismatches++;
            }

            MaxLeasedBytes = Math.Max(MaxLeasedBytes, leased);
            MaxPinnedBytes = Math.Max(MaxPinnedBytes, stack.PinnedBytes);
            MaxLockedBytes = Math.Max(MaxLockedBytes, stack.LockedBytes);
        }

        if (!Down)
        {
            inner.Transmit(batch);
        }
    }

    public bool WaitForFrames(TimeSpan timeout) => inner.WaitForFrames(timeout);

    public void Dispose() => inner.Dispose();
}

/// <summary>
/// Delivers frames the test injects before the frames of the wire, through the stack's own receive path
/// (Poll → ILink.Receive → NetworkInterface.OnFrame), so that anything escaping is seen by the engine's containment.
/// </summary>
internal sealed class FrameInjectingLink(ILink inner) : ILink
{
    private readonly Queue<(byte[] Buffer, int Length)> _queue = new();
    private readonly Stack<byte[]> _pool = new();

    public long Injected { get; private set; }

    public int Pending => _queue.Count;

    public MacAddress HardwareAddress => inner.HardwareAddress;

    public int Mtu => inner.Mtu;

    public long NextEventMicroseconds => inner.NextEventMicroseconds;

    public void Inject(ReadOnlySpan<byte> frame)
    {
        var buffer = _pool.Count > 0 ? _pool.Pop() : new byte[2048];
        if (buffer.Length < frame.Length)
        {
            buffer = new byte[frame.Length];
        }

        frame.CopyTo(buffer);
        _queue.Enqueue((buffer, frame.Length));
        Injected++;
    }

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        var delivered = 0;
        while (delivered < maxFrames && _queue.TryDequeue(out var frame))
        {
            delivered++;
            try
            {
                receiver.OnFrame(frame.Buffer.AsSpan(0, frame.Length));
            }
            finally
            {
                _pool.Push(frame.Buffer);
            }
        }

        return delivered + inner.Receive(receiver, maxFrames - delivered);
    }

    public void Transmit(TransmitBatch batch) => inner.Transmit(batch);

    public bool WaitForFrames(TimeSpan timeout) => _queue.Count > 0 || inner.WaitForFrames(timeout);

    public void Dispose() => inner.Dispose();
}

internal static class MlockSupport
{
    /// <summary>Whether this process may lock a few tens of MiB: CAP_IPC_LOCK (root has it) or a large enough RLIMIT_MEMLOCK.</summary>
    public static bool Allowed(long bytes = 64L << 20)
    {
        var syscalls = LinuxMemoryLockSyscalls.Instance;
        if (syscalls.HasCapIpcLock())
        {
            return true;
        }

        var limit = syscalls.GetMemlockSoftLimit();
        return limit is null || limit.Value >= (ulong)bytes;
    }
}
