namespace Vso.Transport.Tcp.Congestion;

/// <summary>
/// HyStart++ (RFC 9406): leaves slow start before it overshoots, when the RTT of a round rises by
/// more than a threshold over the previous round, through a conservative slow start (CSS) that grows
/// four times more slowly and either confirms the exit after <see cref="CssRounds"/> rounds or resumes
/// slow start if the RTT rise was spurious.
/// </summary>
internal sealed class HyStartPlusPlus
{
    // RFC 9406 §4.3 constants.
    private const long MinRttThreshold = 4_000;
    private const long MaxRttThreshold = 16_000;
    private const int MinRttDivisor = 8;
    private const int RttSamplesPerRound = 8;
    public const int CssGrowthDivisor = 4;
    public const int CssRounds = 5;

    private uint _windowEnd;
    private bool _roundStarted;
    private long _lastRoundMinRtt = long.MaxValue;
    private long _currentRoundMinRtt = long.MaxValue;
    private int _rttSampleCount;
    private long _cssBaselineMinRtt = long.MaxValue;
    private int _cssRoundsDone;

    /// <summary>In conservative slow start: grow by a quarter of the usual slow-start increase.</summary>
    public bool InConservativeSlowStart { get; private set; }

    /// <summary>Called for each ACK in slow start. Returns true when slow start must end now (ssthresh = cwnd).</summary>
    public bool OnAck(in AckSample sample)
    {
        // §4.2: a round ends when the ACK covers the snd.nxt recorded at its start.
        if (!_roundStarted || SequenceNumber.Ge(sample.Acknowledgment, _windowEnd))
        {
            _roundStarted = true;
            _windowEnd = sample.SendNext;
            _lastRoundMinRtt = _currentRoundMinRtt;
            _currentRoundMinRtt = long.MaxValue;
            _rttSampleCount = 0;
            if (InConservativeSlowStart && ++_cssRoundsDone >= CssRounds)
            {
                // §4.2: CSS lasted CSS_ROUNDS rounds: the RTT rise was real, enter congestion avoidance.
                InConservativeSlowStart = false;
                return true;
            }
        }

        if (sample.RttMicroseconds < 0)
        {
            return false;
        }

        _currentRoundMinRtt = Math.Min(_currentRoundMinRtt, sample.RttMicroseconds);
        _rttSampleCount++;

        if (!InConservativeSlowStart)
        {
            if (_rttSampleCount >= RttSamplesPerRound && _currentRoundMinRtt != long.MaxValue && _lastRoundMinRtt != long.MaxValue)
            {
                var threshold = Math.Clamp(_lastRoundMinRtt / MinRttDivisor, MinRttThreshold, MaxRttThreshold);
                if (_currentRoundMinRtt >= _lastRoundMinRtt + threshold)
                {
                    InConservativeSlowStart = true;
                    _cssBaselineMinRtt = _currentRoundMinRtt;
                    _cssRoundsDone = 0;
                }
            }
        }
        else if (_rttSampleCount >= RttSamplesPerRound && _currentRoundMinRtt < _cssBaselineMinRtt)
        {
            // §4.2: the RTT fell back below the baseline: the rise was spurious, resume slow start.
            InConservativeSlowStart = false;
            _cssBaselineMinRtt = long.MaxValue;
        }

        return false;
    }

    /// <summary>After a loss or timeout, HyStart++ starts over for the next slow start.</summary>
    public void Reset()
    {
        InConservativeSlowStart = false;
        _roundStarted = false;
        _lastRoundMinRtt = long.MaxValue;
        _currentRoundMinRtt = long.MaxValue;
        _rttSampleCount = 0;
        _cssBaselineMinRtt = long.MaxValue;
    }
}
