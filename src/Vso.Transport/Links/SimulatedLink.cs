using Vso.Transport.Engine;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// One end of a simulated point-to-point Ethernet wire, driven by an <see cref="IClock"/> (usually a
/// <see cref="VirtualClock"/>). <see cref="Transmit"/> copies each frame into a pooled buffer and puts
/// it in the peer's inbox, due after the propagation delay; <see cref="Receive"/> hands over the frames
/// whose due time has come, in due order (FIFO among equal times). The wire itself never loses,
/// reorders or corrupts: wrap an end in a <see cref="FaultInjector"/> for that.
/// Each end is driven by one thread (its stack's engine, or one virtual-time driver for both); the two
/// ends may run on different threads: the only state they share, an end's inbox and its buffer pool, is
/// guarded by that end's lock, which is never held while a frame is handed to the receiver.
/// </summary>
internal sealed class SimulatedLink : ILink
{
    private readonly IClock _clock;
    private readonly long _delayMicroseconds;
    private readonly int _maxFrameLength;
    private readonly FrameHeap _inbox = new();
    private readonly FrameBufferPool _pool;
    private readonly Lock _gate = new();
    private SimulatedLink _peer = null!;
    private bool _disposed;

    private SimulatedLink(IClock clock, SimulatedLinkOptions options, MacAddress address)
    {
        _clock = clock;
        _delayMicroseconds = LinkTime.ToMicroseconds(options.PropagationDelay);
        Mtu = options.Mtu;
        _maxFrameLength = options.Mtu + LinkTime.EthernetHeaderLength;
        HardwareAddress = address;
        _pool = new FrameBufferPool(_maxFrameLength);
    }

    /// <summary>Creates the two ends of a wire that share <paramref name="clock"/>.</summary>
    public static (SimulatedLink A, SimulatedLink B) CreatePair(IClock clock, SimulatedLinkOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(clock);
        options ??= new SimulatedLinkOptions();
        options.Validate();
        var a = new SimulatedLink(clock, options, options.MacA);
        var b = new SimulatedLink(clock, options, options.MacB);
        a._peer = b;
        b._peer = a;
        return (a, b);
    }

    public MacAddress HardwareAddress { get; }

    public int Mtu { get; }

    /// <summary>Frames put on the wire by this end.</summary>
    public long FramesSent { get; private set; }

    /// <summary>Bytes of the frames put on the wire by this end.</summary>
    public long BytesSent { get; private set; }

    /// <summary>Frames handed to a receiver by this end.</summary>
    public long FramesReceived { get; private set; }

    /// <summary>Bytes of the frames handed to a receiver by this end.</summary>
    public long BytesReceived { get; private set; }

    /// <summary>Frames this end refused to send: longer than MTU plus the Ethernet header.</summary>
    public long FramesDroppedTooLong { get; private set; }

    /// <summary>Frames sent to this end that were dropped because this end was disposed.</summary>
    public long FramesDroppedDisposed { get; private set; }

    /// <summary>Frames on the wire towards this end, due or not yet due.</summary>
    public int PendingFrames
    {
        get
        {
            lock (_gate)
            {
                return _inbox.Count;
            }
        }
    }

    /// <summary>Frame buffers this link has allocated: its peak of frames in flight.</summary>
    internal int BuffersAllocated => _pool.Allocated;

    /// <inheritdoc />
    public long NextEventMicroseconds
    {
        get
        {
            lock (_gate)
            {
                return _inbox.EarliestDue;
            }
        }
    }

    /// <inheritdoc />
    public void Transmit(TransmitBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var due = _clock.NowMicroseconds + _delayMicroseconds;
        for (var i = 0; i < batch.Count; i++)
        {
            var length = batch.FrameLength(i);
            if (length > _maxFrameLength)
            {
                FramesDroppedTooLong++;
                continue;
            }

            FramesSent++;
            BytesSent += length;
            _peer.Accept(batch, i, length, due);
        }
    }

    /// <inheritdoc />
    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var now = _clock.NowMicroseconds;
        var delivered = 0;
        while (delivered < maxFrames)
        {
            // Pop under the lock, hand over outside it: the receiver may transmit, which takes the peer's lock.
            HeldFrame frame;
            lock (_gate)
            {
                if (_inbox.EarliestDue > now)
                {
                    break;
                }

                frame = _inbox.Pop();
            }

            delivered++;
            FramesReceived++;
            BytesReceived += frame.Length;
            try
            {
                receiver.OnFrame(frame.Buffer.AsSpan(0, frame.Length));
            }
            finally
            {
                lock (_gate)
                {
                    _pool.Return(frame.Buffer);
                }
            }
        }

        return delivered;
    }

    /// <summary>Never blocks: returns whether a frame is due now.</summary>
    public bool WaitForFrames(TimeSpan timeout) => !_disposed && NextEventMicroseconds <= _clock.NowMicroseconds;

    /// <summary>Returns the buffers of undelivered frames to the pool. Frames sent here afterwards are dropped.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _inbox.Clear(_pool);
        }
    }

    private void Accept(TransmitBatch batch, int index, int length, long dueMicroseconds)
    {
        lock (_gate)
        {
            if (_disposed)
            {
                FramesDroppedDisposed++;
                return;
            }

            var buffer = _pool.Rent();
            batch.CopyFrame(index, buffer);
            _inbox.Push(buffer, length, dueMicroseconds);
        }
    }
}
