using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Tests.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Robustness;

/// <summary>
/// Two stacks on a simulated wire in virtual time (<see cref="SimulatedNetwork"/>), each behind a
/// <see cref="ProbeLink"/> (which can cut the wire and checks that leased bytes are exactly the bytes gathered
/// into frames), the server's link optionally behind a <see cref="FrameInjectingLink"/>.
/// </summary>
internal sealed class RobustNet : IDisposable
{
    private readonly SimulatedNetwork _net;

    public RobustNet(Action<VsoStackOptions>? configure = null, bool injector = false, TimeSpan? delay = null)
    {
        ProbeLink? clientProbe = null;
        ProbeLink? serverProbe = null;
        _net = new SimulatedNetwork(
            delay: delay ?? TimeSpan.FromMilliseconds(2),
            wrapClientLink: link => clientProbe = new ProbeLink(link),
            wrapServerLink: link =>
            {
                serverProbe = new ProbeLink(link);
                return injector ? Injector = new FrameInjectingLink(serverProbe) : serverProbe;
            },
            configureStack: options =>
            {
                options.Tcp.IsnKey = [5, 6, 7, 8];
                configure?.Invoke(options);
            });
        ClientProbe = clientProbe!;
        ServerProbe = serverProbe!;
        ClientProbe.Stack = Client;
        ServerProbe.Stack = Server;
    }

    public VirtualClock Clock => _net.Clock;

    public SimulatedLink ClientWire => _net.ClientWire;

    public SimulatedLink ServerWire => _net.ServerWire;

    public ProbeLink ClientProbe { get; }

    public ProbeLink ServerProbe { get; }

    public FrameInjectingLink? Injector { get; private set; }

    public VsoStack Client => _net.Client;

    public VsoStack Server => _net.Server;

    public VirtualTimeDriver Driver => _net.Driver;

    public bool Run(Func<bool> done, TimeSpan? limit = null) => _net.Run(done, limit);

    public T Await<T>(Task<T> task, TimeSpan? limit = null) => _net.Await(task, limit);

    public void Await(Task task, TimeSpan? limit = null) => _net.Await(task, limit);

    public (VsoConnection Client, VsoConnection Server) Connect(VsoListener listener) => _net.Connect(listener);

    public (VsoConnection Client, VsoConnection Server) Connect(ushort port = 80) => _net.Connect(port);

    public void Dispose() => _net.Dispose();
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
