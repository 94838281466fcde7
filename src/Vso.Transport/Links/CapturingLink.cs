using Vso.Transport.Engine;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// Decorates an <see cref="ILink"/> and records every frame transmitted and received through it to a
/// libpcap file (<see cref="PcapWriter"/>), stamped with a clock. Where it sits decides what it sees:
/// <c>new CapturingLink(new FaultInjector(link, …), …)</c> records what the stack sent;
/// <c>new FaultInjector(new CapturingLink(link, …), …)</c> records what survived the faults.
/// Transmitted frames are gathered into one reused scratch buffer. Owns the inner link; owns the writer
/// unless <c>leaveWriterOpen</c> (internal: one writer serving several links, for tests). Not thread-safe.
/// </summary>
internal sealed class CapturingLink : ILink
{
    private readonly ILink _inner;
    private readonly PcapWriter _writer;
    private readonly bool _leaveWriterOpen;
    private readonly Tap _tap;
    private byte[] _scratch;
    private bool _disposed;

    /// <summary>
    /// Captures to <paramref name="pcapPath"/> (created, or truncated), timestamped by <paramref name="clock"/>: the
    /// system clock when null; give the stack's <see cref="VirtualClock"/> to see virtual time in the capture.
    /// </summary>
    public CapturingLink(ILink inner, string pcapPath, IClock? clock = null)
        : this(inner, OpenWriter(inner, pcapPath, clock))
    {
    }

    internal CapturingLink(ILink inner, PcapWriter writer, bool leaveWriterOpen = false)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(writer);
        _inner = inner;
        _writer = writer;
        _leaveWriterOpen = leaveWriterOpen;
        _tap = new Tap(writer);
        _scratch = GC.AllocateUninitializedArray<byte>(Math.Max(64, inner.Mtu + LinkTime.EthernetHeaderLength));
    }

    public MacAddress HardwareAddress => _inner.HardwareAddress;

    public ILinkCounters? Counters => _inner.Counters;

    public int Mtu => _inner.Mtu;

    public long NextEventMicroseconds => _inner.NextEventMicroseconds;

    public long FramesCapturedTransmitted { get; private set; }

    public long FramesCapturedReceived => _tap.Captured;

    public void Transmit(TransmitBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        for (var i = 0; i < batch.Count; i++)
        {
            var length = batch.FrameLength(i);
            if (length > _scratch.Length)
            {
                _scratch = GC.AllocateUninitializedArray<byte>(Math.Max(length, _scratch.Length * 2));
            }

            batch.CopyFrame(i, _scratch);
            _writer.WriteFrame(_scratch.AsSpan(0, length));
            FramesCapturedTransmitted++;
        }

        _inner.Transmit(batch);
    }

    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var previous = _tap.Target; // a receiver may receive again from inside OnFrame
        _tap.Target = receiver;
        try
        {
            return _inner.Receive(_tap, maxFrames);
        }
        finally
        {
            _tap.Target = previous;
        }
    }

    public bool WaitForFrames(TimeSpan timeout) => _inner.WaitForFrames(timeout);

    public bool CanBlock => _inner.CanBlock;

    public void Interrupt() => _inner.Interrupt();

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _inner.Dispose();
        if (!_leaveWriterOpen)
        {
            _writer.Dispose();
        }
    }

    // The inner link is checked first, so that a null one does not leave a file behind.
    private static PcapWriter OpenWriter(ILink inner, string pcapPath, IClock? clock)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentException.ThrowIfNullOrWhiteSpace(pcapPath);
        return new PcapWriter(pcapPath, clock ?? SystemClock.Instance);
    }

    /// <summary>Records a received frame, then hands it to the caller's receiver; reused across calls.</summary>
    private sealed class Tap(PcapWriter writer) : IFrameReceiver
    {
        public IFrameReceiver? Target { get; set; }

        public long Captured { get; private set; }

        public void OnFrame(ReadOnlySpan<byte> frame)
        {
            writer.WriteFrame(frame);
            Captured++;
            Target!.OnFrame(frame);
        }
    }
}
