namespace Vso.Transport.Links;

/// <summary>
/// What a <see cref="FaultInjector"/> does to the frames its side transmits. Every default is "no
/// fault": <c>new FaultOptions()</c> passes frames through untouched. Probabilities are in [0, 1].
/// Each kind of fault draws from its own random stream derived from <see cref="Seed"/>, so turning
/// one fault on or off does not change the decisions of the others.
/// </summary>
public sealed record FaultOptions
{
    /// <summary>Seed of the injector's deterministic generator: the same seed and the same traffic give the same faults.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Probability that a frame is lost, independently of every other frame.</summary>
    public double LossRate { get; init; }

    /// <summary>
    /// Gilbert-Elliott bursty loss: per frame, probability of moving from the good state to the bad
    /// state. Zero (the default) disables the model. The mean burst (bad period) lasts
    /// 1 / <see cref="BadToGoodProbability"/> frames.
    /// </summary>
    public double GoodToBadProbability { get; init; }

    /// <summary>Gilbert-Elliott: per frame, probability of moving from the bad state back to the good state.</summary>
    public double BadToGoodProbability { get; init; } = 0.25;

    /// <summary>Gilbert-Elliott: probability that a frame is lost while in the bad state. Default 1 (every frame).</summary>
    public double BadStateLossRate { get; init; } = 1.0;

    /// <summary>Fixed one-way delay added to every frame (whole microseconds).</summary>
    public TimeSpan Delay { get; init; }

    /// <summary>
    /// Uniform jitter: each frame's delay is <see cref="Delay"/> plus a random amount in
    /// [-Jitter, +Jitter], never less than zero. As with netem, jitter alone can reorder frames.
    /// </summary>
    public TimeSpan Jitter { get; init; }

    /// <summary>Probability that a frame is held back by an extra <see cref="ReorderDelay"/>, so later frames overtake it.</summary>
    public double ReorderRate { get; init; }

    /// <summary>Extra delay of a reordered frame. Default 1 ms.</summary>
    public TimeSpan ReorderDelay { get; init; } = TimeSpan.FromMilliseconds(1);

    /// <summary>Probability that a frame is sent twice (the copy goes through the same rate limiter, delay and corruption).</summary>
    public double DuplicateRate { get; init; }

    /// <summary>Probability that 1 to <see cref="MaxCorruptBits"/> distinct random bits anywhere in a frame are flipped.</summary>
    public double CorruptRate { get; init; }

    /// <summary>
    /// Most bits flipped in one corrupted frame (1 to 3, default 3). The internet checksum detects every
    /// single-bit error but misses some two-bit ones (same bit position, opposite directions in two 16-bit
    /// words), so a test that needs every corruption caught uses 1: on a real link the Ethernet FCS catches those.
    /// </summary>
    public int MaxCorruptBits { get; init; } = 3;

    /// <summary>
    /// Bottleneck rate in bits per second; zero (the default) is unlimited. Each frame takes
    /// length × 8 / rate to serialize, after the frames queued before it.
    /// </summary>
    public long RateBitsPerSecond { get; init; }

    /// <summary>
    /// Tail drop: a frame is dropped when the bytes still queued behind the rate limiter plus its own
    /// length would exceed this. Zero (the default) is an unbounded queue. Ignored without a rate.
    /// </summary>
    public long QueueLimitBytes { get; init; }

    /// <summary>Largest frame accepted (Ethernet header included); longer ones are dropped. Zero (the default) means the inner link's MTU plus 14.</summary>
    public int MaxFrameSize { get; init; }

    internal bool IsPassThrough =>
        LossRate == 0 && GoodToBadProbability == 0 && Delay == TimeSpan.Zero && Jitter == TimeSpan.Zero && ReorderRate == 0
        && DuplicateRate == 0 && CorruptRate == 0 && RateBitsPerSecond == 0 && MaxFrameSize == 0;

    internal void Validate()
    {
        CheckProbability(LossRate, nameof(LossRate));
        CheckProbability(GoodToBadProbability, nameof(GoodToBadProbability));
        CheckProbability(BadToGoodProbability, nameof(BadToGoodProbability));
        CheckProbability(BadStateLossRate, nameof(BadStateLossRate));
        CheckProbability(ReorderRate, nameof(ReorderRate));
        CheckProbability(DuplicateRate, nameof(DuplicateRate));
        CheckProbability(CorruptRate, nameof(CorruptRate));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCorruptBits, 1, nameof(MaxCorruptBits));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxCorruptBits, 3, nameof(MaxCorruptBits));
        ArgumentOutOfRangeException.ThrowIfLessThan(Delay, TimeSpan.Zero, nameof(Delay));
        ArgumentOutOfRangeException.ThrowIfLessThan(Jitter, TimeSpan.Zero, nameof(Jitter));
        ArgumentOutOfRangeException.ThrowIfLessThan(ReorderDelay, TimeSpan.Zero, nameof(ReorderDelay));
        ArgumentOutOfRangeException.ThrowIfNegative(RateBitsPerSecond, nameof(RateBitsPerSecond));
        ArgumentOutOfRangeException.ThrowIfNegative(QueueLimitBytes, nameof(QueueLimitBytes));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxFrameSize, nameof(MaxFrameSize));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxFrameSize, 65535, nameof(MaxFrameSize));
    }

    private static void CheckProbability(double value, string name)
    {
        if (!(value >= 0 && value <= 1))
        {
            throw new ArgumentOutOfRangeException(name, value, "A probability must be between 0 and 1.");
        }
    }
}
