namespace Vso.Transport.Tcp;

/// <summary>
/// Smoothed round-trip time and retransmission timeout by RFC 6298, in microseconds.
/// Karn's rule (§3) is the caller's: samples are taken only from segments sent once, or from
/// timestamp echoes (RFC 7323 §4.1), which are unambiguous.
/// </summary>
internal sealed class RttEstimator
{
    private const int Alpha8 = 1; // α = 1/8
    private const int Beta4 = 1;  // β = 1/4
    private const long ClockGranularity = 1_000; // G: the engine's timers fire with millisecond resolution.

    private readonly long _minRto;
    private readonly long _maxRto;

    public RttEstimator(long initialRto, long minRto, long maxRto)
    {
        _minRto = minRto;
        _maxRto = maxRto;
        BaseRto = Math.Clamp(initialRto, minRto, maxRto);
    }

    /// <summary>The connection is reused: no sample yet, the initial RTO (RFC 6298 §2.1).</summary>
    public void Recycle(long initialRto)
    {
        SmoothedRtt = 0;
        RttVariance = 0;
        LatestRtt = 0;
        MinRtt = long.MaxValue;
        HasSample = false;
        BaseRto = Math.Clamp(initialRto, _minRto, _maxRto);
        Backoff = 0;
    }

    public long SmoothedRtt { get; private set; }

    public long RttVariance { get; private set; }

    public long LatestRtt { get; private set; }

    public long MinRtt { get; private set; } = long.MaxValue;

    public bool HasSample { get; private set; }

    /// <summary>RTO before backoff.</summary>
    public long BaseRto { get; private set; }

    /// <summary>Number of consecutive timeouts; each doubles the RTO (§5.5).</summary>
    public int Backoff { get; private set; }

    public long Rto => Math.Min(_maxRto, Backoff >= 20 ? _maxRto : BaseRto << Backoff);

    public void AddSample(long rtt)
    {
        if (rtt < 0)
        {
            return;
        }

        LatestRtt = rtt;
        MinRtt = Math.Min(MinRtt, rtt);
        if (!HasSample)
        {
            // §2.2: first measurement.
            SmoothedRtt = rtt;
            RttVariance = rtt / 2;
            HasSample = true;
        }
        else
        {
            // §2.3: RTTVAR first, with the old SRTT.
            RttVariance = RttVariance - (RttVariance >> 2 * Beta4) + (Math.Abs(SmoothedRtt - rtt) >> 2 * Beta4);
            SmoothedRtt = SmoothedRtt - (SmoothedRtt >> 3 * Alpha8) + (rtt >> 3 * Alpha8);
        }

        BaseRto = Math.Clamp(SmoothedRtt + Math.Max(ClockGranularity, 4 * RttVariance), _minRto, _maxRto);

        // A new sample after a timeout means the path answers again: collapse the backoff (§5.7 note).
        Backoff = 0;
    }

    /// <summary>§5.5: back off the timer on expiry.</summary>
    public void OnTimeout()
    {
        if (Backoff < 30)
        {
            Backoff++;
        }
    }

    public void ResetBackoff() => Backoff = 0;
}
