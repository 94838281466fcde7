using System.Reflection;
using Vso.Transport.Api;
using Vso.Transport.Links;
using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;
using Vso.Transport.Tests.Tcp;
using Vso.Transport.Tests.Traces;
using Vso.Transport.Wire;
using Xunit.Abstractions;

namespace Vso.Transport.Tests.Recovery;

/// <summary>
/// The plug-in seam, used the way a third party would: a loss recovery and a congestion control written here,
/// against the public <see cref="ILossRecovery"/> and <see cref="ICongestionControl"/> only, chosen per stack
/// through <see cref="Vso.Transport.Tcp.TcpSettings"/>, without a line of src/ changed.
/// </summary>
public sealed class PluggableSeamTests(ITestOutputHelper output)
{
    [Fact]
    public void Custom_recovery_resends_the_head_on_the_first_duplicate_ACK_in_a_trace()
    {
        using var p = new SackPeer(s =>
        {
            s.LossRecovery = static _ => new HeadOnEveryDuplicateAck();
            s.CongestionControl = static () => new FixedWindow(4);
        });
        p.Open(TimeSpan.FromMilliseconds(50), sack: false);
        Assert.Equal("head-on-dupack", p.Info.LossRecovery);
        Assert.Equal("fixed-window", p.Info.CongestionControl);

        // The fixed window lets exactly four segments out.
        var sending = p.SendData(6);
        var flight = p.Drain();
        Assert.Equal(Enumerable.Range(0, 4).Select(p.Seg), flight.Select(s => s.Seq));
        Assert.Equal(4 * p.Mss, p.Info.CongestionWindow);

        // Segment 0 is lost; the first duplicate ACK (for segment 1) makes this algorithm resend the head at once,
        // where NewReno would wait for the third.
        p.Peer.Advance(TimeSpan.FromMilliseconds(50));
        p.ReceiveAndAck(flight[1]);
        var again = p.Peer.Expect(TcpFlags.Ack, seq: p.Seg(0), within: TimeSpan.Zero);
        Assert.Equal(1, p.Info.RetransmittedSegments);

        // The second duplicate does it again: the algorithm decides, the engine obeys.
        p.ReceiveAndAck(flight[2]);
        p.Peer.Expect(TcpFlags.Ack, seq: p.Seg(0), within: TimeSpan.Zero);
        p.Play(TimeSpan.FromMilliseconds(50), static (_, _) => false, () => sending.IsCompleted, pending: [again, flight[3]]);
        Assert.Equal(0, p.Info.Timeouts);
        Assert.Equal(4 * p.Mss, p.Info.CongestionWindow);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_selector_is_asked_once_with_the_SACK_the_handshake_settled(bool peerOffersSack)
    {
        var asked = new List<bool>();
        using var p = new SackPeer(s => s.LossRecovery = sackPermitted =>
        {
            asked.Add(sackPermitted);
            return Vso.Transport.Tcp.TcpSettings.DefaultLossRecovery(sackPermitted);
        });
        p.Open(TimeSpan.FromMilliseconds(50), sack: peerOffersSack);
        var sending = p.SendData(2);
        p.Play(TimeSpan.FromMilliseconds(50), static (_, _) => false, () => sending.IsCompleted);

        Assert.Equal(new[] { peerOffersSack }, asked);
        Assert.Equal(peerOffersSack ? "rack-tlp" : "newreno", p.Info.LossRecovery);
    }

    [Fact]
    public void Custom_recovery_and_congestion_control_move_8_MiB_intact_through_loss()
    {
        var faults = new FaultOptions { LossRate = 0.01, Seed = 77 };
        var result = RecoveryTransfer.OneWay(faults, faults with { Seed = 78 }, 8 << 20, s =>
        {
            s.LossRecovery = static _ => new HeadOnEveryDuplicateAck();
            s.CongestionControl = static () => new FixedWindow(32);
        }, TimeSpan.FromMilliseconds(5));
        Assert.True(result.Intact, result.Describe());
        Assert.Equal("head-on-dupack", result.Sender.LossRecovery);
        Assert.Equal("fixed-window", result.Sender.CongestionControl);
        Assert.Equal(32 * result.Sender.MaxSegmentSize, result.Sender.CongestionWindow);
        Assert.True(result.Sender.RetransmittedSegments > 0);
        output.WriteLine($"8 MiB at 1% loss: {result.GoodputMbps:F1} Mbit/s, retransmissions {result.Sender.RetransmittedSegments}, timeouts {result.Sender.Timeouts}");
    }

    [Fact]
    public void The_built_in_RACK_TLP_refuses_a_sender_that_is_not_the_engines()
    {
        // RACK-TLP reads the engine's internal scoreboard, which the public sender does not expose: a wrapper must pass
        // on the sender it was given (as EngineFaultTests.TimerFaultRecovery does), not one of its own.
        var rack = VsoAlgorithms.RackTlpRecovery(sackPermitted: true);
        var foreign = DispatchProxy.Create<ILossRecoverySender, UnusableSender>();
        var error = Assert.Throws<ArgumentException>(() => rack.Attach(foreign));
        Assert.Equal("sender", error.ParamName);
        Assert.Contains("the one the engine passes to ILossRecovery.Attach", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A sender of the plug-in's own making; any call on it is a failure of the test.</summary>
    public class UnusableSender : DispatchProxy
    {
        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) =>
            throw new InvalidOperationException($"{targetMethod?.Name} was called on a sender the algorithm should have refused.");
    }

    /// <summary>Deliberately naive: every duplicate ACK resends the segment at SND.UNA; the RTO goes back to SND.UNA.</summary>
    private sealed class HeadOnEveryDuplicateAck : ILossRecovery
    {
        private ILossRecoverySender _sender = null!;

        public string Name => "head-on-dupack";

        public bool InRecovery => false;

        public long TimerDeadline => 0;

        public void Attach(ILossRecoverySender sender) => _sender = sender;

        public void OnAck(in AckEvent ack)
        {
            if (ack.IsDuplicate)
            {
                _sender.Retransmit(_sender.SendUnacknowledged, _sender.MaxSegmentSize);
            }
        }

        public void OnRetransmissionTimeout()
        {
            _sender.CongestionControl.OnRetransmissionTimeout(_sender.BytesInFlight, _sender.NowMicroseconds);
            _sender.RewindSendNext(_sender.SendUnacknowledged);
        }

        public long SendQuota => _sender.CongestionControl.CongestionWindow - _sender.BytesInFlight;

        public void RepairLosses()
        {
        }

        public void OnTransmitted(uint sequence, int length, bool isRetransmission)
        {
        }

        public void OnTimer(long nowMicroseconds)
        {
        }

        public void OnSpuriousTimeout()
        {
        }
    }

    /// <summary>A window of a fixed number of segments, whatever happens.</summary>
    private sealed class FixedWindow(int segments) : ICongestionControl
    {
        public string Name => "fixed-window";

        public long CongestionWindow { get; private set; }

        public long SlowStartThreshold => long.MaxValue;

        public void Initialize(int mss, long nowMicroseconds) => CongestionWindow = (long)segments * mss;

        public void OnAck(in AckSample sample)
        {
        }

        public void OnCongestionEvent(long bytesInFlight, long nowMicroseconds)
        {
        }

        public void OnRetransmissionTimeout(long bytesInFlight, long nowMicroseconds)
        {
        }

        public void OnRecoveryEnd(long bytesInFlight, long nowMicroseconds)
        {
        }

        public void OnSpuriousCongestionEvent()
        {
        }
    }
}
