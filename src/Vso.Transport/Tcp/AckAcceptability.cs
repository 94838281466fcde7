namespace Vso.Transport.Tcp;

/// <summary>Where SEG.ACK lies against what we sent (RFC 9293 §3.10.7.4 fifth check, RFC 5961 §5.2).</summary>
internal enum AckAcceptability
{
    /// <summary>(SND.UNA - MAX.SND.WND) &lt;= SEG.ACK &lt;= SND.NXT: process it.</summary>
    Acceptable,

    /// <summary>SEG.ACK &gt; SND.NXT: it acknowledges something not yet sent.</summary>
    Unsent,

    /// <summary>SEG.ACK &lt; SND.UNA - MAX.SND.WND: older than any ACK the peer could still send (blind data injection).</summary>
    TooOld,
}
