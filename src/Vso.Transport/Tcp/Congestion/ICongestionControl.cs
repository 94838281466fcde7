namespace Vso.Transport.Tcp.Congestion;

/// <summary>
/// A congestion controller: owns the congestion window and slow-start threshold of one connection.
/// The engine calls it on every ACK that acknowledges new data and when loss recovery declares a loss.
/// One instance per connection, called on the engine thread only.
/// </summary>
public interface ICongestionControl
{
    string Name { get; }

    /// <summary>Congestion window in bytes.</summary>
    long CongestionWindow { get; }

    /// <summary>Slow-start threshold in bytes (<see cref="long.MaxValue"/> until the first loss).</summary>
    long SlowStartThreshold { get; }

    /// <summary>The connection is established; <paramref name="mss"/> is the sender's maximum segment payload.</summary>
    void Initialize(int mss, long nowMicroseconds);

    /// <summary>New data was acknowledged outside of loss recovery.</summary>
    void OnAck(in AckSample sample);

    /// <summary>Loss recovery starts (fast retransmit): reduce the window once per congestion event.</summary>
    void OnCongestionEvent(long bytesInFlight, long nowMicroseconds);

    /// <summary>The retransmission timer expired: collapse to the loss window (RFC 5681 §3.1).</summary>
    void OnRetransmissionTimeout(long bytesInFlight, long nowMicroseconds);

    /// <summary>Loss recovery ended; <paramref name="bytesInFlight"/> is what remains outstanding.</summary>
    void OnRecoveryEnd(long bytesInFlight, long nowMicroseconds);

    /// <summary>
    /// The last window reduction was spurious (D-SACK proved every retransmission unnecessary, RFC 3708, or
    /// Eifel proved the timeout spurious, RFC 3522): restore the window and threshold from before it.
    /// </summary>
    void OnSpuriousCongestionEvent();
}

/// <summary>What one ACK told the congestion controller.</summary>
/// <param name="BytesAcknowledged">Bytes newly acknowledged (snd.una advance).</param>
/// <param name="BytesInFlight">Bytes still outstanding after this ACK.</param>
/// <param name="RttMicroseconds">RTT sample carried by this ACK, or -1.</param>
/// <param name="NowMicroseconds">Engine time.</param>
/// <param name="IsApplicationLimited">The sender had less data than the window allowed.</param>
/// <param name="Acknowledgment">SEG.ACK: the new snd.una.</param>
/// <param name="SendNext">snd.nxt when the ACK arrived: marks the end of the current round trip (HyStart++ rounds).</param>
public readonly record struct AckSample(long BytesAcknowledged, long BytesInFlight, long RttMicroseconds, long NowMicroseconds, bool IsApplicationLimited, uint Acknowledgment = 0, uint SendNext = 0);
