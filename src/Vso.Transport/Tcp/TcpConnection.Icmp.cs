namespace Vso.Transport.Tcp;

/// <summary>
/// ICMP Destination Unreachable for this connection (RFC 1122 §4.2.3.9, RFC 5461, RFC 5927, RFC 1191).
/// </summary>
internal sealed partial class TcpConnection
{
    /// <summary>RFC 1191 §4 / RFC 792: Destination Unreachable code 4, "fragmentation needed and DF set".</summary>
    private const byte FragmentationNeeded = 4;

    /// <summary>
    /// The lowest path MTU an ICMP message can make us use. RFC 791 lets links go down to 68 bytes, but a path MTU
    /// learned from an ICMP message that anyone can forge would then cut every segment to 16 payload bytes
    /// (RFC 5927 §7, the "performance-degrading" attack). 576 is the datagram size every host must accept (RFC 1122
    /// §3.3.3, EMTU_R) and the one TCP assumes without an MSS option (536 + 40, RFC 9293 §3.7.1), so no real path
    /// below it is plausible; Linux floors at 552 (min_pmtu) for the same reason. A path truly narrower than 576
    /// black-holes our segments (we always set DF), which is the cost of refusing the attack.
    /// </summary>
    internal const int MinPathMtu = 576;

    /// <summary>RFC 1191 §7: the plateau table, for a "fragmentation needed" from a router that does not say its MTU.</summary>
    private static ReadOnlySpan<ushort> MtuPlateaus => [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];

    /// <summary>The last soft ICMP error (RFC 1122 §4.2.3.9), reported if the connection later times out; None when none.</summary>
    private TcpError _softError;

    private string? _softErrorText;

    /// <summary>The last ICMP error recorded without ending the connection (RFC 5461 §4 "soft" error), or None.</summary>
    public TcpError SoftError => _softError;

    /// <summary>
    /// An ICMP Destination Unreachable quoting one of our segments (<paramref name="quotedSequence"/> is its SEG.SEQ).
    /// Returns false when it was ignored (not in flight, no state to act on, or no lower MTU).
    /// </summary>
    internal bool OnIcmpError(byte code, uint quotedSequence, ushort nextHopMtu, ushort quotedTotalLength)
    {
        if (State is TcpState.Closed or TcpState.Listen or TcpState.TimeWait)
        {
            return false;
        }

        // RFC 5927 §4.1: act only when the quoted sequence number lies in flight (SND.UNA <= SEG.SEQ < SND.MAX),
        // which an off-path attacker must guess; in SYN-SENT that is the ISS alone.
        var sequence = new SeqNum(quotedSequence);
        if (sequence < _sender.SendUnacknowledged || !(sequence < _sender.SendMax))
        {
            return false;
        }

        if (code == FragmentationNeeded)
        {
            return OnFragmentationNeeded(nextHopMtu, quotedTotalLength);
        }

        var (error, text) = Describe(code);

        // RFC 1122 §4.2.3.9 and RFC 5461 §4: while connecting, an unreachable destination ends the attempt (the
        // application learns at once instead of after every SYN retransmission); in any other state the error is
        // soft, since routing may change and the peer may still answer: it is kept for the timeout's report.
        if (State == TcpState.SynSent)
        {
            Terminate(new TcpConnectionException(error, $"Connection to {Id.RemoteAddress}:{Id.RemotePort} failed: {text} (ICMP destination unreachable, code {code})."));
            return true;
        }

        _softError = error;
        _softErrorText = $"{text} (ICMP code {code})";
        return true;
    }

    /// <summary>The error a timeout reports: the last soft ICMP error when there was one (RFC 1122 §4.2.3.9, as Linux does), else TimedOut.</summary>
    private TcpConnectionException TimeoutError(string message) =>
        _softError == TcpError.None
            ? new TcpConnectionException(TcpError.TimedOut, message)
            : new TcpConnectionException(_softError, $"{message} Last ICMP error: {_softErrorText}.");

    /// <summary>
    /// RFC 1191 §6.1: the path MTU fell below what our segments need. The MSS is lowered (never raised by ICMP, never
    /// below <see cref="MinPathMtu"/>), and what is in flight is cut again to the new size and resent at once: those
    /// segments were dropped by the router, and waiting for the retransmission timer would stall the connection.
    /// </summary>
    private bool OnFragmentationNeeded(ushort nextHopMtu, ushort quotedTotalLength)
    {
        if (State is not (TcpState.Established or TcpState.CloseWait or TcpState.FinWait1 or TcpState.Closing or TcpState.LastAck))
        {
            return false; // a handshake segment carries no data to cut
        }

        // RFC 1191 §5: a router older than RFC 1191 reports 0; guess the next plateau below what we sent.
        int pathMtu = nextHopMtu;
        if (pathMtu == 0)
        {
            foreach (var plateau in MtuPlateaus)
            {
                if (plateau < quotedTotalLength)
                {
                    pathMtu = plateau;
                    break;
                }
            }
        }

        pathMtu = Math.Max(pathMtu, MinPathMtu);

        // IPv4 and TCP headers, and the timestamps every segment carries (as the handshake computed the MSS).
        var segmentSize = pathMtu - 40 - (_timestamps ? 12 : 0);
        if (segmentSize >= MaxSegmentSize)
        {
            return false;
        }

        MaxSegmentSize = segmentSize;
        Statistics.PathMtuReductions++;
        _sender.ResendInFlightAtSegmentSize();
        return true;
    }

    private static (TcpError Error, string Text) Describe(byte code) => code switch
    {
        0 => (TcpError.NetworkUnreachable, "network unreachable"),
        2 => (TcpError.Refused, "protocol unreachable"),
        3 => (TcpError.Refused, "port unreachable"),
        6 => (TcpError.NetworkUnreachable, "destination network unknown"),
        9 or 11 => (TcpError.NetworkUnreachable, "network unreachable (administratively prohibited or for this type of service)"),
        13 => (TcpError.HostUnreachable, "communication administratively prohibited"),
        _ => (TcpError.HostUnreachable, "host unreachable"),
    };
}
