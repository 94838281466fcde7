using Vso.Transport.Tcp.Congestion;

namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Loss detection and recovery for one connection: decides what to retransmit and when. Every
/// retransmission goes through <see cref="ILossRecoverySender.Retransmit"/>, which asks the host for the
/// bytes again by descriptor; an algorithm never holds data. One instance per connection, created once when
/// the handshake settles SACK and called on the engine thread only. A third party implements this interface
/// and returns it from <see cref="TcpSettings.LossRecovery"/>.
/// </summary>
public interface ILossRecovery
{
    string Name { get; }

    bool InRecovery { get; }

    /// <summary>Called once, as soon as <see cref="TcpSettings.LossRecovery"/> has chosen this instance, with the connection it serves.</summary>
    void Attach(ILossRecoverySender sender);

    /// <summary>Every acceptable ACK in a synchronized state, after snd.una and the scoreboard have moved.</summary>
    void OnAck(in AckEvent ack);

    /// <summary>The retransmission timer (RFC 6298 §5.4) expired; the engine has already backed it off.</summary>
    void OnRetransmissionTimeout();

    /// <summary>
    /// The repair step, run whenever the engine sends (before new data, and also when there is none): retransmit,
    /// through <see cref="ILossRecoverySender.Retransmit"/>, what the algorithm holds lost, within <see cref="SendQuota"/>.
    /// </summary>
    void RepairLosses();

    /// <summary>
    /// How many more bytes the congestion state lets into the network now (the peer's window is applied
    /// separately). A pure query: reading it sends nothing.
    /// </summary>
    long SendQuota { get; }

    /// <summary>A data segment left: <paramref name="isRetransmission"/> when it resent bytes sent before.</summary>
    void OnTransmitted(uint sequence, int length, bool isRetransmission);

    /// <summary>The algorithm's own timer (RACK reordering, tail loss probe) in engine microseconds, or 0.</summary>
    long TimerDeadline { get; }

    /// <summary>The algorithm's timer expired.</summary>
    void OnTimer(long nowMicroseconds);

    /// <summary>The engine proved the last timeout spurious (RFC 3522 Eifel, by timestamps): undo its effects.</summary>
    void OnSpuriousTimeout();
}

/// <summary>The connection as a loss-recovery algorithm sees it.</summary>
public interface ILossRecoverySender
{
    uint SendUnacknowledged { get; }

    uint SendNext { get; }

    /// <summary>Highest sequence number sent so far, plus one.</summary>
    uint SendMax { get; }

    int MaxSegmentSize { get; }

    /// <summary>snd.nxt - snd.una.</summary>
    long BytesInFlight { get; }

    long NowMicroseconds { get; }

    long SmoothedRttMicroseconds { get; }

    /// <summary>At least one RTT sample was taken (SRTT may legitimately be 0 on a zero-delay simulated wire).</summary>
    bool HasRttSample { get; }

    long MinRttMicroseconds { get; }

    long RtoMicroseconds { get; }

    /// <summary>Both sides agreed on SACK (RFC 2018); settled before the algorithm was chosen, it never changes.</summary>
    bool SackEnabled { get; }

    ICongestionControl CongestionControl { get; }

    /// <summary>Sends again, through the host, up to <paramref name="maxBytes"/> from <paramref name="sequence"/> (one segment). Returns bytes sent.</summary>
    int Retransmit(uint sequence, int maxBytes);

    /// <summary>Sends one segment of new data if the application queued some and the peer's window allows. Returns bytes sent.</summary>
    int SendNewSegment();

    /// <summary>Go back: the next new transmission starts at <paramref name="sequence"/> (RFC 6298 §5.4 after a timeout).</summary>
    void RewindSendNext(uint sequence);

    /// <summary>Restarts the retransmission timer from now (RFC 6298 §5.3) while data is outstanding; does nothing when all is acknowledged.</summary>
    void RestartRetransmitTimer();

    /// <summary>Counts events for TCP info and metrics; nothing else.</summary>
    void Report(RecoveryEvent recoveryEvent, int count = 1);
}

/// <summary>Things loss recovery reports to the engine's counters.</summary>
public enum RecoveryEvent
{
    FastRecovery,
    /// <summary>A tail loss probe (RFC 8985 §7.3), the first of a silence or a further one.</summary>
    TailLossProbe,
    SpuriousRetransmission,
    Undo,
    RackLoss,
}

/// <summary>One ACK as loss recovery sees it.</summary>
/// <param name="Acknowledgment">SEG.ACK.</param>
/// <param name="BytesAcknowledged">How far snd.una moved.</param>
/// <param name="IsDuplicate">A duplicate ACK by RFC 5681 §2 (or, with SACK, one that SACKs new data without moving snd.una, RFC 6675 §2).</param>
/// <param name="BytesSacked">Bytes newly SACKed by this ACK.</param>
/// <param name="DsackBytes">Bytes a D-SACK block (RFC 2883) reported received twice, 0 if none.</param>
/// <param name="DsackCoversRetransmission">The D-SACK block covers data we retransmitted: that retransmission was spurious.</param>
/// <param name="NewestSentAt">Latest send time among the segments this ACK delivered (acknowledged or SACKed), or -1.</param>
/// <param name="NewestEnd">End sequence of that segment.</param>
/// <param name="NewestWasRetransmitted">That segment had been retransmitted (its RTT is ambiguous).</param>
/// <param name="EchoedTimestampMicroseconds">Engine time our echoed timestamp was sent at (RFC 7323 TSecr), or -1.</param>
public readonly record struct AckEvent(
    uint Acknowledgment,
    long BytesAcknowledged,
    bool IsDuplicate,
    long BytesSacked = 0,
    long DsackBytes = 0,
    bool DsackCoversRetransmission = false,
    long NewestSentAt = -1,
    uint NewestEnd = 0,
    bool NewestWasRetransmitted = false,
    long EchoedTimestampMicroseconds = -1);
