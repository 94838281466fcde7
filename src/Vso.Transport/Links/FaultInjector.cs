using Vso.Transport.Engine;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// Decorates any <see cref="ILink"/> and applies seeded, deterministic faults to the frames this side
/// transmits: random loss, Gilbert-Elliott bursty loss, delay with jitter, reordering, duplication,
/// bit corruption, and a rate limiter with a tail-drop queue. Wrap both ends of a wire to fault both
/// directions. Received frames pass through untouched.
/// </summary>
/// <remarks>
/// <para>Per transmitted frame, in this order: too long → dropped; bursty loss, then random loss (frames
/// lost here never reach the queue, as in netem); duplication; then for the frame and its copy each:
/// tail drop when the rate limiter's queue is full, departure time after serialization
/// (departure = max(now, previous departure) + bits / rate), release time = departure + delay ± jitter
/// (+ reorder delay), corruption.</para>
/// <para>Frames are copied into pooled buffers and held in a min-heap by release time (FIFO among equal
/// times). Those due are handed to the inner link in one reused batch at the end of
/// <see cref="Transmit"/> and at the start of <see cref="Receive"/> and <see cref="WaitForFrames"/>: a
/// virtual-time driver must call <see cref="Receive"/> at <see cref="NextEventMicroseconds"/>.</para>
/// <para>The injector owns the inner link and disposes it. With default options it forwards batches
/// unchanged, without copying. Not thread-safe.</para>
/// </remarks>
internal sealed class FaultInjector : ILink
{
    private const int ForwardBatchCapacity = 64;

    private readonly ILink _inner;
    private readonly IClock _clock;
    private readonly FaultOptions _options;
    private readonly bool _passThrough;
    private readonly int _maxFrameSize;
    private readonly long _delayMicroseconds;
    private readonly long _jitterMicroseconds;
    private readonly long _reorderMicroseconds;
    private readonly FrameHeap _held = new();
    private readonly FrameBufferPool _pool;
    private readonly TransmitBatch? _forward;

    // One generator per fault kind, so that enabling one fault does not shift the decisions of another.
    private Xoshiro256StarStar _lossRandom;
    private Xoshiro256StarStar _burstRandom;
    private Xoshiro256StarStar _duplicateRandom;
    private Xoshiro256StarStar _corruptRandom;
    private Xoshiro256StarStar _reorderRandom;
    private Xoshiro256StarStar _jitterRandom;

    private bool _badState;
    private long _lastDepartureNanoseconds;
    private bool _disposed;

    public FaultInjector(ILink inner, IClock clock, FaultOptions options)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(clock);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _inner = inner;
        _clock = clock;
        _options = options;
        _passThrough = options.IsPassThrough;
        _maxFrameSize = options.MaxFrameSize != 0 ? options.MaxFrameSize : inner.Mtu + LinkTime.EthernetHeaderLength;
        _delayMicroseconds = LinkTime.ToMicroseconds(options.Delay);
        _jitterMicroseconds = LinkTime.ToMicroseconds(options.Jitter);
        _reorderMicroseconds = LinkTime.ToMicroseconds(options.ReorderDelay);
        _pool = new FrameBufferPool(_maxFrameSize);
        _lossRandom = Xoshiro256StarStar.ForStream(options.Seed, 1);
        _burstRandom = Xoshiro256StarStar.ForStream(options.Seed, 2);
        _duplicateRandom = Xoshiro256StarStar.ForStream(options.Seed, 3);
        _corruptRandom = Xoshiro256StarStar.ForStream(options.Seed, 4);
        _reorderRandom = Xoshiro256StarStar.ForStream(options.Seed, 5);
        _jitterRandom = Xoshiro256StarStar.ForStream(options.Seed, 6);
        if (!_passThrough)
        {
            _forward = new TransmitBatch(ForwardBatchCapacity, Math.Max(64, _maxFrameSize));
        }
    }

    public MacAddress HardwareAddress => _inner.HardwareAddress;

    public ILinkCounters? Counters => _inner.Counters;

    public int Mtu => _inner.Mtu;

    public FaultOptions Options => _options;

    /// <summary>The link the injector wraps.</summary>
    internal ILink Inner => _inner;

    /// <summary>Frames given to <see cref="Transmit"/>.</summary>
    public long FramesSubmitted { get; private set; }

    /// <summary>Frames handed to the inner link, duplicates included.</summary>
    public long FramesPassed { get; private set; }

    /// <summary>Frames lost to <see cref="FaultOptions.LossRate"/>.</summary>
    public long FramesDroppedRandom { get; private set; }

    /// <summary>Frames lost in the bad state of the Gilbert-Elliott model.</summary>
    public long FramesDroppedBurst { get; private set; }

    /// <summary>Frames (or duplicates) tail-dropped because the rate limiter's queue was full.</summary>
    public long FramesDroppedQueueFull { get; private set; }

    /// <summary>Frames longer than <see cref="FaultOptions.MaxFrameSize"/>.</summary>
    public long FramesDroppedTooLong { get; private set; }

    /// <summary>Frames sent twice.</summary>
    public long FramesDuplicated { get; private set; }

    /// <summary>Frames (or duplicates) with flipped bits.</summary>
    public long FramesCorrupted { get; private set; }

    /// <summary>Frames (or duplicates) held back by the reorder delay.</summary>
    public long FramesReordered { get; private set; }

    /// <summary>Frames (or duplicates) not passed on at once: held by delay, jitter, reordering or the rate limiter.</summary>
    public long FramesDelayed { get; private set; }

    /// <summary>Frames currently held, waiting for their release time.</summary>
    public int HeldFrames => _held.Count;

    /// <summary>Whether the Gilbert-Elliott model is in its bad (bursty loss) state.</summary>
    public bool InBadState => _badState;

    /// <summary>Frame buffers this link has allocated: its peak of frames in flight.</summary>
    internal int BuffersAllocated => _pool.Allocated;

    /// <inheritdoc />
    public long NextEventMicroseconds => Math.Min(_held.EarliestDue, _inner.NextEventMicroseconds);

    /// <inheritdoc />
    public void Transmit(TransmitBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_passThrough)
        {
            FramesSubmitted += batch.Count;
            FramesPassed += batch.Count;
            _inner.Transmit(batch);
            return;
        }

        var now = _clock.NowMicroseconds;
        for (var i = 0; i < batch.Count; i++)
        {
            FramesSubmitted++;
            var length = batch.FrameLength(i);
            if (length > _maxFrameSize)
            {
                FramesDroppedTooLong++;
                continue;
            }

            if (IsLost())
            {
                continue;
            }

            Enqueue(batch, i, length, now);
            if (_options.DuplicateRate > 0 && _duplicateRandom.Chance(_options.DuplicateRate))
            {
                FramesDuplicated++;
                Enqueue(batch, i, length, now);
            }
        }

        ReleaseDue(now);
    }

    /// <summary>Passes held frames that are due to the inner link, then receives from it.</summary>
    public int Receive(IFrameReceiver receiver, int maxFrames)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        ObjectDisposedException.ThrowIf(_disposed, this);
        ReleaseDue(_clock.NowMicroseconds);
        return _inner.Receive(receiver, maxFrames);
    }

    /// <summary>Waits on the inner link; the caller bounds the wait by <see cref="NextEventMicroseconds"/>.</summary>
    public bool WaitForFrames(TimeSpan timeout)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        // Only waits: a turn on another thread may be transmitting (the engine's TurnOnCallingThread). Held frames are
        // released in Receive, inside a turn; the engine's timeout already ends at NextEventMicroseconds, their due time.
        return _inner.WaitForFrames(timeout);
    }

    public bool CanBlock => _inner.CanBlock;

    public void Interrupt() => _inner.Interrupt();

    /// <summary>Drops the held frames (returning their buffers) and disposes the inner link.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _held.Clear(_pool);
        _forward?.Clear();
        _inner.Dispose();
    }

    private bool IsLost()
    {
        // Both streams draw for every frame whatever the outcome, so each pattern depends only on the seed
        // and the frame count.
        var burstLost = false;
        if (_options.GoodToBadProbability > 0)
        {
            _badState = _badState
                ? !_burstRandom.Chance(_options.BadToGoodProbability)
                : _burstRandom.Chance(_options.GoodToBadProbability);
            burstLost = _badState && _burstRandom.Chance(_options.BadStateLossRate);
        }

        var randomLost = _options.LossRate > 0 && _lossRandom.Chance(_options.LossRate);
        if (burstLost)
        {
            FramesDroppedBurst++;
            return true;
        }

        if (randomLost)
        {
            FramesDroppedRandom++;
            return true;
        }

        return false;
    }

    private void Enqueue(TransmitBatch batch, int index, int length, long now)
    {
        var departure = now;
        var rate = _options.RateBitsPerSecond;
        if (rate > 0)
        {
            // Nanoseconds keep the serialization times of odd rates from drifting.
            var nowNanoseconds = now * 1000;
            var start = Math.Max(nowNanoseconds, _lastDepartureNanoseconds);
            if (_options.QueueLimitBytes > 0)
            {
                // A byte partly serialized still counts as queued (rounded up).
                var backlogBytes = (long)((((Int128)(start - nowNanoseconds) * rate) + 7_999_999_999L) / 8_000_000_000L);
                if (backlogBytes + length > _options.QueueLimitBytes)
                {
                    FramesDroppedQueueFull++;
                    return;
                }
            }

            var serialization = (long)((((Int128)length * 8_000_000_000L) + rate - 1) / rate);
            _lastDepartureNanoseconds = start + serialization;
            departure = (_lastDepartureNanoseconds + 999) / 1000; // the frame arrives once its last bit has left
        }

        var release = departure + _delayMicroseconds;
        if (_jitterMicroseconds > 0)
        {
            release += _jitterRandom.NextInt64((2 * _jitterMicroseconds) + 1) - _jitterMicroseconds;
            release = Math.Max(departure, release);
        }

        if (_options.ReorderRate > 0 && _reorderRandom.Chance(_options.ReorderRate))
        {
            FramesReordered++;
            release += _reorderMicroseconds;
        }

        var buffer = _pool.Rent();
        batch.CopyFrame(index, buffer);
        if (_options.CorruptRate > 0 && _corruptRandom.Chance(_options.CorruptRate) && length > 0)
        {
            FramesCorrupted++;
            Corrupt(buffer.AsSpan(0, length));
        }

        if (release > now)
        {
            FramesDelayed++;
        }

        _held.Push(buffer, length, release);
    }

    /// <summary>Flips 1 to MaxCorruptBits distinct bits chosen uniformly over the whole frame.</summary>
    private void Corrupt(Span<byte> frame)
    {
        long totalBits = frame.Length * 8L;
        var flips = 1 + (int)_corruptRandom.NextInt64(_options.MaxCorruptBits);
        long first = -1;
        long second = -1;
        for (var k = 0; k < flips; k++)
        {
            long bit;
            do
            {
                bit = _corruptRandom.NextInt64(totalBits);
            }
            while (bit == first || bit == second);

            frame[(int)(bit >> 3)] ^= (byte)(0x80 >> (int)(bit & 7));
            if (k == 0)
            {
                first = bit;
            }
            else
            {
                second = bit;
            }
        }
    }

    private void ReleaseDue(long now)
    {
        var forward = _forward;
        if (forward is null || _held.EarliestDue > now)
        {
            return;
        }

        try
        {
            while (_held.EarliestDue <= now)
            {
                var frame = _held.Pop();
                var destination = forward.Begin();
                frame.Buffer.AsSpan(0, frame.Length).CopyTo(destination);
                forward.Commit(frame.Length);
                _pool.Return(frame.Buffer);
                FramesPassed++;
                if (forward.IsFull)
                {
                    _inner.Transmit(forward);
                    forward.Clear();
                }
            }

            if (forward.Count > 0)
            {
                _inner.Transmit(forward);
            }
        }
        finally
        {
            forward.Clear();
        }
    }
}
