namespace Vso.Transport.Tcp.Recovery;

/// <summary>Where a SACK-based recovery episode stands (<see cref="RackTlpRecovery"/> owns it; its parts read it).</summary>
internal enum RecoveryPhase
{
    /// <summary>No loss being repaired.</summary>
    Open,

    /// <summary>Fast recovery (RFC 6675 §5): losses detected from SACKs, the window paced down by PRR (RFC 6937).</summary>
    Fast,

    /// <summary>After a retransmission timeout (RFC 6675 §5.1, RFC 8985 §6.3): everything not SACKed is resent in slow start.</summary>
    AfterTimeout,
}
