using Vso.Transport.Tcp.Recovery;

namespace Vso.Transport.Tcp;

internal sealed partial class TcpSender
{
    /// <summary>
    /// The MSS fell (RFC 1191 §6.1, path MTU discovery): every unacknowledged segment is larger than the path
    /// takes and was dropped by a router. Resend them now, cut from the same descriptors to the new size (the
    /// bytes were never copied): a go-back-N without a timeout, which does not count as congestion (Linux's
    /// tcp_simple_retransmit). RACK-TLP marks the scoreboard lost and repairs from SND.UNA, as after a timeout but
    /// with the window untouched; any other recovery goes back to SND.UNA with SND.NXT, as <see cref="RtoRecovery"/> does.
    /// </summary>
    public void ResendInFlightAtSegmentSize()
    {
        if (SendUnacknowledged == SendMax)
        {
            return;
        }

        _rttTiming = false; // Karn: what follows is a retransmission
        if (_recovery is RackTlpRecovery rack)
        {
            rack.OnSegmentSizeReduced();
        }
        else
        {
            RewindSendNext(SendUnacknowledged);
        }

        _connection.RequestOutput();
    }
}
