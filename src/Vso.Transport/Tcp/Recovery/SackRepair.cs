namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// Repair in the spirit of RFC 6675 §5: lost segments first, in sequence order (NextSeg rule 1), then new data
/// (rule 2), with the pipe, not snd.nxt - snd.una, as the measure of what is in flight. What is lost is marked on
/// the scoreboard by RACK (<see cref="RackLossDetector"/>) or by a timeout; this class resends it.
/// </summary>
internal sealed class SackRepair(IScoreboardSender sender)
{
    /// <summary>Where the search for the next lost segment starts: nothing before it waits for retransmission.</summary>
    private uint _lostHint;

    /// <summary>A reused connection (same sender): no hint.</summary>
    public void Reset() => _lostHint = 0;

    /// <summary>RFC 6675 §5: the congestion window less the pipe, outside fast recovery (where PRR decides instead).</summary>
    public long WindowLessPipe => sender.CongestionControl.CongestionWindow - sender.Scoreboard.Pipe(sender.SendUnacknowledged, sender.SendMax);

    /// <summary>Segments from <paramref name="start"/> on were marked lost.</summary>
    public void OnLost(uint start)
    {
        if (SequenceNumber.Lt(start, _lostHint))
        {
            _lostHint = start;
        }
    }

    /// <summary>A timeout marked everything lost (RFC 6675 §5.1): repair starts over at snd.una.</summary>
    public void RestartAtUnacknowledged() => _lostHint = sender.SendUnacknowledged;

    /// <summary>Resends the first segment waiting for retransmission. False when none waits or the sender could not resend it.</summary>
    public bool RetransmitNextLost()
    {
        var index = NextLost();
        if (index < 0)
        {
            return false;
        }

        // The hint stays at this record: a retransmission shorter than the record (more option bytes
        // than when it was first sent) splits it, and the rest still waits here.
        var record = sender.Scoreboard[index];
        _lostHint = record.Start;
        return sender.Retransmit(record.Start, record.Length) != 0 || !sender.Scoreboard.NeedsRetransmission(index);
    }

    /// <summary>The first segment waiting for retransmission at or after the hint (RFC 6675 NextSeg rule 1).</summary>
    private int NextLost()
    {
        var scoreboard = sender.Scoreboard;
        var start = SequenceNumber.Gt(_lostHint, sender.SendUnacknowledged) ? scoreboard.IndexOf(_lostHint) : 0;
        if (start < 0)
        {
            return -1;
        }

        for (var i = start; i < scoreboard.Count; i++)
        {
            if (scoreboard.NeedsRetransmission(i))
            {
                return i;
            }
        }

        return -1;
    }
}
