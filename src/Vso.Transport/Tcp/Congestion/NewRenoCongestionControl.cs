namespace Vso.Transport.Tcp.Congestion;

/// <summary>
/// RFC 5681 slow start and congestion avoidance with appropriate byte counting (RFC 3465, L = 2*SMSS)
/// and the initial window of RFC 6928.
/// </summary>
internal sealed class NewRenoCongestionControl : ICongestionControl
{
    private int _mss = 1460;
    private long _bytesAckedInAvoidance;
    private long _priorWindow;
    private long _priorThreshold = long.MaxValue;

    public string Name => "newreno";

    public long CongestionWindow { get; private set; }

    public long SlowStartThreshold { get; private set; } = long.MaxValue;

    /// <summary>A reused connection: as built (the initial window comes with <see cref="Initialize"/>, RFC 6928).</summary>
    public void Reset()
    {
        _mss = 1460;
        _bytesAckedInAvoidance = 0;
        _priorWindow = 0;
        _priorThreshold = long.MaxValue;
        CongestionWindow = 0;
        SlowStartThreshold = long.MaxValue;
    }

    public void Initialize(int mss, long nowMicroseconds)
    {
        _mss = mss;

        // RFC 6928 §2: IW = min(10*MSS, max(2*MSS, 14600)).
        CongestionWindow = Math.Min(10L * mss, Math.Max(2L * mss, 14600));
    }

    public void OnAck(in AckSample sample)
    {
        if (sample.IsApplicationLimited && sample.BytesInFlight + sample.BytesAcknowledged < CongestionWindow)
        {
            // RFC 7661 spirit: do not grow a window the sender is not using.
            return;
        }

        if (CongestionWindow < SlowStartThreshold)
        {
            // RFC 3465 §2.2: grow by the bytes acknowledged, at most L = 2*SMSS per ACK.
            CongestionWindow += Math.Min(sample.BytesAcknowledged, 2L * _mss);
            return;
        }

        // RFC 5681 §3.1 eqn. 3 with byte counting: one SMSS per window of acknowledged bytes.
        _bytesAckedInAvoidance += sample.BytesAcknowledged;
        if (_bytesAckedInAvoidance >= CongestionWindow)
        {
            _bytesAckedInAvoidance -= CongestionWindow;
            CongestionWindow += _mss;
        }
    }

    public void OnCongestionEvent(long bytesInFlight, long nowMicroseconds)
    {
        SavePrior();
        // RFC 5681 eqn. 4, then RFC 6582 §3.2 step 2 without inflation (recovery adds it).
        SlowStartThreshold = Math.Max(bytesInFlight / 2, 2L * _mss);
        CongestionWindow = SlowStartThreshold;
        _bytesAckedInAvoidance = 0;
    }

    public void OnRetransmissionTimeout(long bytesInFlight, long nowMicroseconds)
    {
        SavePrior();
        SlowStartThreshold = Math.Max(bytesInFlight / 2, 2L * _mss);
        CongestionWindow = _mss;
        _bytesAckedInAvoidance = 0;
    }

    public void OnSpuriousCongestionEvent()
    {
        // RFC 4015 §3.2 / Linux's undo: the larger of the current and the prior window, the prior threshold.
        CongestionWindow = Math.Max(CongestionWindow, _priorWindow);
        SlowStartThreshold = Math.Max(SlowStartThreshold == long.MaxValue ? 0 : SlowStartThreshold, _priorThreshold);
    }

    private void SavePrior()
    {
        _priorWindow = CongestionWindow;
        _priorThreshold = SlowStartThreshold;
    }

    public void OnRecoveryEnd(long bytesInFlight, long nowMicroseconds)
    {
        // RFC 6582 §3.2 step 6, option 1: deflate to min(ssthresh, FlightSize + SMSS).
        CongestionWindow = Math.Max(Math.Min(SlowStartThreshold, bytesInFlight + _mss), _mss);
    }
}
