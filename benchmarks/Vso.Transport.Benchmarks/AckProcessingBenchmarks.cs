using BenchmarkDotNet.Attributes;
using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// ACK processing against a large scoreboard: 1,000 segments in flight, every fourth one lost, each ACK carrying
/// three SACK blocks (the most a segment with timestamps holds). One op is one ACK the way the engine handles it:
/// the SACK blocks onto the scoreboard (binary search), the cumulative ACK, then RACK-TLP's OnAck (RACK loss
/// detection walks the scoreboard, PRR, probe scheduling), RepairLosses (retransmits what RACK marked lost,
/// through a fake sender that only updates the scoreboard) and SendQuota. The window slides by one segment per ACK (one new
/// segment sent, one acknowledged), so every op sees the same shape: a steady state with nothing to allocate.
/// With <see cref="Loss"/> false the same flight is clean: plain cumulative ACKs, no SACK, nothing lost (a bulk transfer).
/// </summary>
[MemoryDiagnoser]
public class AckProcessingBenchmarks
{
    public const int InFlight = 1000;
    private const int Mss = 1448;

    private FakeSender _sender = null!;
    private RackTlpRecovery _recovery = null!;
    private uint _top;

    [Params(true, false)]
    public bool Loss { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _sender = new FakeSender();
        _recovery = new RackTlpRecovery();
        _recovery.Attach(_sender);
        _sender.Recovery = _recovery;
        for (var i = 0; i < InFlight; i++)
        {
            _sender.Transmit();
        }

        _top = InFlight;

        // Warm up: fill the scoreboard with SACKs and loss marks until every op looks the same.
        for (var i = 0; i < 4 * InFlight; i++)
        {
            Ack(withRecovery: true);
        }

        var board = _sender.Scoreboard;
        if (!Loss && (board.Count != InFlight || board.SackedSegments != 0 || board.LostBytes != 0 || _recovery.InRecovery))
        {
            throw new InvalidOperationException($"Not a clean flight: {board.Count} segments, {board.LostBytes} bytes lost.");
        }

        if (Loss && (board.Count != InFlight || board.SackedSegments < InFlight / 2))
        {
            throw new InvalidOperationException($"Not the intended steady state: {board.Count} segments, {board.SackedSegments} SACKed.");
        }

        Console.WriteLine($"// steady state: {board.Count} segments on the scoreboard, {board.SackedSegments} SACKed, {board.LostBytes / Mss} lost awaiting retransmission, {board.RetransmittedInFlightBytes / Mss} retransmitted in flight, in recovery {_recovery.InRecovery}");
    }

    [Benchmark(Baseline = true, Description = "scoreboard only: 3 SACK blocks + cumulative ACK")]
    public long ScoreboardOnly() => Ack(withRecovery: false);

    [Benchmark(Description = "scoreboard + RACK-TLP OnAck + RepairLosses")]
    public long WithRackTlp() => Ack(withRecovery: true);

    private long Ack(bool withRecovery)
    {
        var s = _sender;
        s.Now += 20;
        s.Transmit();
        _top++;

        // The receiver has everything but every fourth segment: runs [4j+1, 4j+4). Blocks: the three highest runs.
        var highestRun = (_top & ~3u) - 4;
        var una = s.SendUnacknowledged + Mss;
        long newestSentAt = -1;
        uint newestEnd = 0;
        var newestRetransmitted = false;
        long sacked = 0;
        for (var k = 0u; k < (Loss ? 3u : 0u); k++)
        {
            var first = highestRun - (4 * k) + 1;
            var left = s.Base + (first * Mss);
            var right = left + (3 * Mss);
            if ((int)(right - una) > 0)
            {
                sacked += s.Scoreboard.OnSackBlock((int)(left - una) > 0 ? left : una, right, ref newestSentAt, ref newestEnd, ref newestRetransmitted);
            }
        }

        s.Scoreboard.OnCumulativeAck(una, ref newestSentAt, ref newestEnd, ref newestRetransmitted);
        s.SendUnacknowledged = una;
        if (withRecovery)
        {
            _recovery.OnAck(new AckEvent(una, Mss, false, sacked, 0, false, newestSentAt, newestEnd, newestRetransmitted));
            _recovery.RepairLosses();
            return _recovery.SendQuota;
        }

        return sacked;
    }

    /// <summary>The connection as RACK-TLP sees it, without a network: retransmissions only update the scoreboard.</summary>
    private sealed class FakeSender : IScoreboardSender
    {
        private readonly NewRenoCongestionControl _congestion = new();

        public FakeSender()
        {
            _congestion.Initialize(Mss, 0);
            SendUnacknowledged = Base;
            SendMax = Base;
        }

        public uint Base { get; } = 1_000_000;

        public RackTlpRecovery Recovery { get; set; } = null!;

        public long Now { get; set; } = 1_000_000;

        public uint SendUnacknowledged { get; set; }

        public uint SendNext => SendMax;

        public uint SendMax { get; private set; }

        public int MaxSegmentSize => Mss;

        public long BytesInFlight => SendMax - SendUnacknowledged;

        public long NowMicroseconds => Now;

        public long SmoothedRttMicroseconds => 20_000;

        public bool HasRttSample => true;

        public long MinRttMicroseconds => 20_000;

        public long RtoMicroseconds => 200_000;

        public bool SackEnabled => true;

        public ICongestionControl CongestionControl => _congestion;

        public SackScoreboard Scoreboard { get; } = new();

        public void Transmit()
        {
            Scoreboard.OnTransmit(SendMax, SendMax + Mss, Now);
            SendMax += Mss;
        }

        public int Retransmit(uint sequence, int maxBytes)
        {
            var length = Math.Min(maxBytes, Mss);
            Scoreboard.OnRetransmit(sequence, sequence + (uint)length, Now);
            Recovery.OnTransmitted(sequence, length, isRetransmission: true);
            return length;
        }

        public int SendNewSegment() => 0;

        public void RewindSendNext(uint sequence)
        {
        }

        public void RestartRetransmitTimer()
        {
        }

        public void Report(RecoveryEvent recoveryEvent, int count = 1)
        {
        }
    }
}
