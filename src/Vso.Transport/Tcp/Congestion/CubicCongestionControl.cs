namespace Vso.Transport.Tcp.Congestion;

/// <summary>
/// CUBIC (RFC 9438) with HyStart++ (RFC 9406) in slow start and appropriate byte counting (RFC 3465).
/// The window grows as a cubic function of the time since the last congestion event, plateaus near the
/// window where loss last happened (W_max), and never grows more slowly than Reno would (§4.3).
/// </summary>
internal sealed class CubicCongestionControl : ICongestionControl
{
    // RFC 9438 §5.1 constants.
    private const double C = 0.4;
    private const double Beta = 0.7;
    private static readonly double AlphaReno = 3.0 * (1 - Beta) / (1 + Beta);

    private readonly HyStartPlusPlus _hystart = new();
    private readonly bool _useHyStart;
    private int _mss = 1460;
    private double _wMax;          // segments
    private double _wLastMax;      // segments, for fast convergence (§4.7)
    private double _k;             // seconds
    private double _wEst;          // segments, the Reno-friendly estimate (§4.3)
    private long _epochStart = -1; // microseconds, start of the current congestion-avoidance epoch
    private double _cwndSegments;
    private (double Cwnd, long Ssthresh, double WMax, double WLastMax) _prior = (0, long.MaxValue, 0, 0);

    public CubicCongestionControl()
        : this(hyStart: true)
    {
    }

    public CubicCongestionControl(bool hyStart) => _useHyStart = hyStart;

    public string Name => "cubic";

    public long CongestionWindow => (long)(_cwndSegments * _mss);

    public long SlowStartThreshold { get; private set; } = long.MaxValue;

    /// <summary>W_max in bytes: the window at the last congestion event (for observability and tests).</summary>
    public long WindowMax => (long)(_wMax * _mss);

    /// <summary>K in microseconds: the time the cubic function takes to climb back to W_max.</summary>
    public long K => (long)(_k * 1_000_000);

    public bool InConservativeSlowStart => _hystart.InConservativeSlowStart;

    public void Initialize(int mss, long nowMicroseconds)
    {
        _mss = mss;

        // RFC 6928 §2 initial window.
        _cwndSegments = Math.Min(10L * mss, Math.Max(2L * mss, 14600)) / (double)mss;
    }

    public void OnAck(in AckSample sample)
    {
        if (sample.IsApplicationLimited && sample.BytesInFlight + sample.BytesAcknowledged < CongestionWindow)
        {
            // RFC 9438 §4.2 / RFC 7661: do not grow a window the sender is not using.
            return;
        }

        if (CongestionWindow < SlowStartThreshold)
        {
            SlowStart(sample);
            return;
        }

        CongestionAvoidance(sample);
    }

    private void SlowStart(in AckSample sample)
    {
        // RFC 3465 §2.2: at most L = 2*SMSS per ACK; HyStart++ CSS grows by a quarter of that.
        var increase = Math.Min(sample.BytesAcknowledged, 2L * _mss);
        if (_useHyStart)
        {
            if (_hystart.OnAck(sample))
            {
                SlowStartThreshold = CongestionWindow;
                return;
            }

            if (_hystart.InConservativeSlowStart)
            {
                increase /= HyStartPlusPlus.CssGrowthDivisor;
            }
        }

        _cwndSegments += (double)increase / _mss;
    }

    private void CongestionAvoidance(in AckSample sample)
    {
        var now = sample.NowMicroseconds;
        if (_epochStart < 0)
        {
            // §4.2: a new epoch starts with the first ACK in congestion avoidance.
            _epochStart = now;
            if (_cwndSegments < _wMax)
            {
                _k = Math.Cbrt((_wMax - _cwndSegments) / C);
            }
            else
            {
                _k = 0;
                _wMax = _cwndSegments;
            }

            _wEst = _cwndSegments;
        }

        var segmentsAcked = (double)sample.BytesAcknowledged / _mss;
        var rtt = Math.Max(sample.RttMicroseconds, 0) / 1_000_000.0;
        var t = ((now - _epochStart) / 1_000_000.0) + rtt;

        // §4.2 eqn. 1: W_cubic(t) = C (t - K)^3 + W_max, aimed at one RTT ahead, bounded to 1.5 cwnd (§4.4).
        var target = (C * Math.Pow(t - _k, 3)) + _wMax;
        target = Math.Clamp(target, _cwndSegments, 1.5 * _cwndSegments);

        // §4.3: the Reno-friendly estimate, with α_cubic until W_est reaches W_max, then Reno's α = 1.
        var alpha = _wEst < _wMax ? AlphaReno : 1.0;
        _wEst += alpha * segmentsAcked / _cwndSegments;

        if (_wEst > target)
        {
            _cwndSegments = Math.Max(_cwndSegments, _wEst);
        }
        else
        {
            // §4.4/4.5: grow by (target - cwnd) / cwnd per acknowledged segment.
            _cwndSegments += (target - _cwndSegments) / _cwndSegments * segmentsAcked;
        }
    }

    public void OnCongestionEvent(long bytesInFlight, long nowMicroseconds)
    {
        ReduceOnLoss();
        _cwndSegments = Math.Max(SlowStartThreshold / (double)_mss, 2);
    }

    public void OnRetransmissionTimeout(long bytesInFlight, long nowMicroseconds)
    {
        ReduceOnLoss();

        // §4.8 with RFC 5681 §3.1: one segment after a timeout.
        _cwndSegments = 1;
    }

    public void OnRecoveryEnd(long bytesInFlight, long nowMicroseconds)
    {
        // The window after recovery is ssthresh, set when recovery began.
        _cwndSegments = Math.Max(SlowStartThreshold / (double)_mss, 2);
    }

    /// <summary>§4.9: a spurious congestion event is undone: window, threshold and W_max as they were.</summary>
    public void OnSpuriousCongestionEvent()
    {
        _cwndSegments = Math.Max(_cwndSegments, _prior.Cwnd);
        SlowStartThreshold = _prior.Ssthresh;
        _wMax = _prior.WMax;
        _wLastMax = _prior.WLastMax;
        _epochStart = -1;
    }

    /// <summary>§4.6 multiplicative decrease with §4.7 fast convergence.</summary>
    private void ReduceOnLoss()
    {
        var cwnd = _cwndSegments;
        _prior = (cwnd, SlowStartThreshold, _wMax, _wLastMax);
        _wMax = cwnd < _wLastMax ? cwnd * (1 + Beta) / 2 : cwnd;
        _wLastMax = cwnd;
        SlowStartThreshold = Math.Max((long)(cwnd * Beta * _mss), 2L * _mss);
        _epochStart = -1;
        _hystart.Reset();
    }
}
