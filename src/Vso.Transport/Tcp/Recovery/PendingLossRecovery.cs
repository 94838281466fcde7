namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Stands in for a connection's loss recovery until the handshake settles SACK and
/// <see cref="TcpSettings.LossRecovery"/> chooses the algorithm. Before that no data is in flight (the SYN has
/// its own timer, RFC 6298 §5.7), so the engine only reads the algorithm's name, state and timer; anything
/// else reaching it is an engine bug and throws rather than pass for recovery.
/// </summary>
internal sealed class PendingLossRecovery : ILossRecovery
{
    /// <summary>Stateless, so one serves every connection.</summary>
    public static readonly PendingLossRecovery Instance = new();

    private PendingLossRecovery()
    {
    }

    public string Name => "none";

    public bool InRecovery => false;

    public long TimerDeadline => 0;

    public long SendQuota => throw NotChosen();

    public void Attach(ILossRecoverySender sender) => throw NotChosen();

    public void OnAck(in AckEvent ack) => throw NotChosen();

    public void OnRetransmissionTimeout() => throw NotChosen();

    public void RepairLosses() => throw NotChosen();

    public void OnTransmitted(uint sequence, int length, bool isRetransmission) => throw NotChosen();

    public void OnTimer(long nowMicroseconds) => throw NotChosen();

    public void OnSpuriousTimeout() => throw NotChosen();

    private static InvalidOperationException NotChosen() =>
        new("Loss recovery is chosen when the handshake settles SACK; no segment it could act on exists before that.");
}
