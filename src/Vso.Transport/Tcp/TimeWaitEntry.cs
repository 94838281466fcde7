namespace Vso.Transport.Tcp;

/// <summary>
/// What a connection in TIME-WAIT still needs (RFC 9293 §3.6.1, §3.10.7.4): the sequence numbers to acknowledge a
/// retransmitted FIN and to judge acceptability, TS.Recent and the timestamp offset for PAWS (RFC 7323 §5) and for a
/// new incarnation's SYN (RFC 6191), the reply limits, and the expiry. The connection itself, with its sender,
/// receiver and the application's objects, is gone: an entry is 64 bytes (issue 12, connection setup).
/// A mutable struct kept in <see cref="TimeWaitTable"/>'s dictionary and changed only through a reference to it.
/// </summary>
internal struct TimeWaitEntry
{
    /// <summary>When the 2*MSL timer expires, engine microseconds.</summary>
    public long Deadline;

    /// <summary>The earliest time the next challenge ACK may go (RFC 5961 §7, the connection's limit).</summary>
    public long ChallengeAckAt;

    /// <summary>The earliest time the next ACK to an invalid pure ACK or SYN may go (Linux's tcp_invalid_ratelimit).</summary>
    public long InvalidAckAt;

    /// <summary>SND.MAX, the sequence number of every ACK we send (all of it acknowledged: our FIN too).</summary>
    public uint SendMax;

    /// <summary>The lowest acceptable SEG.ACK: SND.UNA - MAX.SND.WND (RFC 5961 §5.2).</summary>
    public uint OldestAcceptableAck;

    /// <summary>RCV.NXT, past the peer's FIN; also Last.ACK.sent.</summary>
    public uint ReceiveNext;

    /// <summary>RCV.WND as advertised (to the furthest right edge offered).</summary>
    public uint ReceiveWindow;

    /// <summary>The window our ACKs offer, in bytes (the field below, unscaled).</summary>
    public uint OfferedWindow;

    /// <summary>SND.WND, the peer's last window (for PAWS' exception of a reordered duplicate ACK).</summary>
    public uint SendWindow;

    public uint TsRecent;

    public uint TsOffset;

    /// <summary>2*MSL, restarted by a retransmitted FIN; microseconds (saturated at about 71 minutes).</summary>
    public uint TimeWaitMicroseconds;

    /// <summary>The reply limits' intervals in microseconds; 0: no limit.</summary>
    public uint ChallengeAckIntervalMicroseconds;

    public uint InvalidAckIntervalMicroseconds;

    /// <summary>Which expiry item in the table's queue is this entry's (a reused 4-tuple's old item is stale).</summary>
    public uint Serial;

    /// <summary>The window field of our ACKs (scaled by our shift).</summary>
    public ushort WindowField;

    public byte SendWindowShift;

    public TimeWaitFlags Flags;

    /// <summary>Whether the connection used timestamps (RFC 7323 §3.2).</summary>
    public readonly bool Timestamps => (Flags & TimeWaitFlags.Timestamps) != 0;

    /// <summary>Whether both sides agreed on SACK (RFC 2018): a duplicate gets a D-SACK (RFC 2883).</summary>
    public readonly bool Sack => (Flags & TimeWaitFlags.Sack) != 0;
}

/// <summary>The negotiated options a <see cref="TimeWaitEntry"/> keeps.</summary>
[Flags]
internal enum TimeWaitFlags : byte
{
    None = 0,
    Timestamps = 1,
    Sack = 2,
}
