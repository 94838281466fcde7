namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Retransmission on timeout alone (RFC 6298 §5.4-5.6): on expiry, collapse the window and go back to
/// snd.una, so the oldest unacknowledged segment is sent first and the rest follows in slow start.
/// </summary>
public class RtoRecovery : ILossRecovery
{
    protected ILossRecoverySender Sender { get; private set; } = null!;

    public virtual string Name => "rto";

    public virtual bool InRecovery => false;

    public virtual long WindowAllowance => 0;

    public void Attach(ILossRecoverySender sender) => Sender = sender;

    public virtual void OnAck(in AckEvent ack)
    {
    }

    public virtual void OnRetransmissionTimeout()
    {
        Sender.CongestionControl.OnRetransmissionTimeout(Sender.BytesInFlight, Sender.NowMicroseconds);
        Sender.RewindSendNext(Sender.SendUnacknowledged);
    }
}
