using Vso.Transport.Tcp.Congestion;

namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Loss detection and recovery for one connection: decides what to retransmit and when. Every
/// retransmission goes through <see cref="ILossRecoverySender.Retransmit"/>, which asks the host for the
/// bytes again by descriptor; an algorithm never holds data. Called on the engine thread only.
/// </summary>
public interface ILossRecovery
{
    string Name { get; }

    bool InRecovery { get; }

    void Attach(ILossRecoverySender sender);

    /// <summary>Every acceptable ACK in a synchronized state, after snd.una has moved.</summary>
    void OnAck(in AckEvent ack);

    /// <summary>The retransmission timer (RFC 6298 §5.4) expired; the engine has already backed it off.</summary>
    void OnRetransmissionTimeout();

    /// <summary>Extra bytes the sender may have in flight beyond the congestion window (fast-recovery inflation).</summary>
    long WindowAllowance { get; }
}

/// <summary>The connection as a loss-recovery algorithm sees it.</summary>
public interface ILossRecoverySender
{
    uint SendUnacknowledged { get; }

    uint SendNext { get; }

    /// <summary>Highest sequence number sent so far, plus one.</summary>
    uint SendMax { get; }

    int MaxSegmentSize { get; }

    long BytesInFlight { get; }

    long NowMicroseconds { get; }

    ICongestionControl CongestionControl { get; }

    /// <summary>Sends again, through the host, up to <paramref name="maxBytes"/> from <paramref name="sequence"/> (one segment). Returns bytes sent.</summary>
    int Retransmit(uint sequence, int maxBytes);

    /// <summary>Go back: the next new transmission starts at <paramref name="sequence"/> (RFC 6298 §5.4 after a timeout).</summary>
    void RewindSendNext(uint sequence);
}

/// <summary>One ACK as loss recovery sees it.</summary>
/// <param name="Acknowledgment">SEG.ACK.</param>
/// <param name="BytesAcknowledged">How far snd.una moved.</param>
/// <param name="IsDuplicate">A duplicate ACK by RFC 5681 §2: no data, no window change, nothing new acknowledged, data outstanding.</param>
public readonly record struct AckEvent(uint Acknowledgment, long BytesAcknowledged, bool IsDuplicate);
