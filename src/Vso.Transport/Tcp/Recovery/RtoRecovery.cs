namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Retransmission on timeout alone (RFC 6298 §5.4-5.6): on expiry, collapse the window and go back to
/// snd.una, so the oldest unacknowledged segment is sent first and the rest follows in slow start.
/// </summary>
internal class RtoRecovery : ILossRecovery
{
    protected ILossRecoverySender Sender { get; private set; } = null!;

    public virtual string Name => "rto";

    public virtual bool InRecovery => false;

    public virtual long TimerDeadline => 0;

    public void Attach(ILossRecoverySender sender) => Sender = sender;

    public virtual void OnAck(in AckEvent ack)
    {
    }

    public virtual void OnRetransmissionTimeout()
    {
        Sender.CongestionControl.OnRetransmissionTimeout(Sender.BytesInFlight, Sender.NowMicroseconds);
        Sender.RewindSendNext(Sender.SendUnacknowledged);
    }

    /// <summary>Nothing to repair between timeouts: the timeout itself resends (RFC 6298 §5.4).</summary>
    public virtual void RepairLosses()
    {
    }

    /// <summary>The congestion window less what is in flight.</summary>
    public virtual long SendQuota => Sender.CongestionControl.CongestionWindow - Sender.BytesInFlight;

    public virtual void OnTransmitted(uint sequence, int length, bool isRetransmission)
    {
    }

    public virtual void OnTimer(long nowMicroseconds)
    {
    }

    /// <summary>RFC 4015 response, reduced: restore the congestion state the timeout took away.</summary>
    public virtual void OnSpuriousTimeout()
    {
        Sender.CongestionControl.OnSpuriousCongestionEvent();
        Sender.Report(RecoveryEvent.Undo);
    }
}
