using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// The receive side of one connection: the receive sequence variables (RFC 9293 §3.3.1), the reassembly
/// buffer, segment text and FIN (§3.10.7.4, seventh and eighth checks), the SACK and D-SACK blocks we report
/// (RFC 2018, RFC 2883), when a larger window is worth announcing (§3.8.6.2.2) and delayed ACKs (RFC 5681 §4.2).
/// The connection decides whether a segment is acceptable and in which state; this type places its bytes.
/// </summary>
internal sealed class TcpReceiver
{
    private readonly TcpConnection _connection;
    private readonly ReceiveBuffer _buffer;
    private readonly MemoryBudget _memory;
    private readonly TcpLayer _layer;

    /// <summary>The window shift we offer in our SYN (RFC 7323 §2.3); in force only when the peer offered one too.</summary>
    private readonly int _windowShift;

    /// <summary>RCV.NXT + RCV.WND as last advertised, to tell when the window grew enough to announce (SWS avoidance).</summary>
    private SeqNum _advertisedRightEdge;

    /// <summary>
    /// The furthest right edge we have advertised (RCV.NXT + RCV.WND of some ACK or of our SYN): what the peer may
    /// fill, so the edge the acceptability test uses (RFC 9293 §3.10.7.4). It never moves left (§3.8.6, SHLD-14):
    /// a segment sent into a window we offered stays acceptable.
    /// </summary>
    private SeqNum _offeredRightEdge;

    /// <summary>An ACK (or SYN-ACK) has advertised a window; until then, under memory pressure, one block is offered.</summary>
    private bool _hasAdvertised;

    private bool _finReceived;
    private SeqNum _outOfOrderFin;
    private bool _hasOutOfOrderFin;

    /// <summary>Start of the most recent segment placed, for the first SACK block (RFC 2018 §4).</summary>
    private SeqNum _lastReceivedSequence;

    /// <summary>A duplicate to report in the next ACK's first SACK block (RFC 2883 §4); empty when start == end.</summary>
    private SeqNum _dsackStart;
    private SeqNum _dsackEnd;

    private long _delayedAckDeadline;

    /// <summary>New in-order bytes received since our last ACK, for the ACK every 2*RMSS (RFC 9293 §3.8.6.3).</summary>
    private int _bytesSinceAck;

    public TcpReceiver(TcpConnection connection, TcpLayer layer, TcpSettings settings)
    {
        _connection = connection;
        _layer = layer;
        _memory = layer.Memory;
        _buffer = new ReceiveBuffer(settings.ReceiveBufferSize, settings.MaxOutOfOrderRanges, _memory);
        _windowShift = OfferedWindowShift(settings);
    }

    /// <summary>
    /// The connection is reused with the same settings (the window shift stays): every receive variable as a new
    /// connection has it, the buffer empty at <paramref name="settings"/>' size. False if the buffer still holds a block.
    /// </summary>
    public bool TryRecycle(TcpSettings settings)
    {
        if (!_buffer.TryRecycle(settings.ReceiveBufferSize))
        {
            return false;
        }

        _advertisedRightEdge = default;
        _offeredRightEdge = default;
        _hasAdvertised = false;
        _finReceived = false;
        _outOfOrderFin = default;
        _hasOutOfOrderFin = false;
        _lastReceivedSequence = default;
        _dsackStart = default;
        _dsackEnd = default;
        _delayedAckDeadline = 0;
        _bytesSinceAck = 0;
        _requestedCapacity = 0;
        InitialSequence = default;
        Next = default;
        AckOwed = false;
        return true;
    }

    /// <summary>RFC 7323 §2.3: the smallest shift that lets the whole receive buffer be advertised (0 without scaling).</summary>
    public static int OfferedWindowShift(TcpSettings settings)
    {
        var shift = 0;
        while (settings.WindowScaling && (settings.ReceiveBufferSize >> shift) > ushort.MaxValue && shift < 14)
        {
            shift++;
        }

        return shift;
    }

    /// <summary>IRS.</summary>
    public SeqNum InitialSequence { get; private set; }

    /// <summary>RCV.NXT.</summary>
    public SeqNum Next { get; private set; }

    /// <summary>The window shift we offer in our SYN (in force only when both SYNs carry the option).</summary>
    public int WindowShift => _windowShift;

    /// <summary>
    /// RCV.WND: the free room of the receive buffer, counted against the configured size whatever the blocks hold.
    /// Above the stack's soft memory mark the window stops opening: it reaches only to the furthest right edge already
    /// advertised, which is never moved back (RFC 9293 §3.8.6, RFC 7323 §2.4), so the peer may still send what it
    /// was offered and nothing more. Before anything was advertised it offers one block.
    /// </summary>
    public int Window
    {
        get
        {
            var free = _buffer.Window;
            if (!_memory.UnderPressure)
            {
                return free;
            }

            if (!_hasAdvertised)
            {
                return Math.Min(free, ReceiveBlockPool.BlockSize);
            }

            return Math.Clamp(_offeredRightEdge - Next, 0, free);
        }
    }

    /// <summary>Block bytes of receive memory this connection holds (in-order and out-of-order).</summary>
    public long HeldBytes => (long)_buffer.BlocksHeld * ReceiveBlockPool.BlockSize;

    /// <summary>Out-of-order bytes held beyond RCV.NXT.</summary>
    public int OutOfOrderBytes => _buffer.OutOfOrderBytes;

    /// <summary>
    /// RCV.WND as advertised: from RCV.NXT to the furthest right edge offered, not the whole free buffer (RFC 9293
    /// §3.10.7.4, RFC 7323 §2.2-2.3: without window scaling at most 65,535 bytes are ever offered).
    /// </summary>
    public int AdvertisedWindow => Math.Max(0, _offeredRightEdge - Next);

    /// <summary>An ACK is owed and goes out with the next output, alone if no data carries it.</summary>
    public bool AckOwed { get; private set; }

    /// <summary>The delayed-ACK deadline in engine microseconds, or 0.</summary>
    public long DelayedAckDeadline => _delayedAckDeadline;

    /// <summary>In-order bytes received and not yet read by the application.</summary>
    public int ReadableBytes => _buffer.Count;

    /// <summary>The peer closed its side and every byte before its FIN has been read.</summary>
    public bool IsEndOfStream => _finReceived && _buffer.Count == 0;

    public int OutOfOrderRanges => _buffer.RangeCount;

    /// <summary>SACK blocks the next segment would carry, before the option space limits them: every held range and a pending D-SACK.</summary>
    public int PendingSackBlocks => _buffer.RangeCount + (_dsackEnd != _dsackStart ? 1 : 0);

    /// <summary>The peer's SYN fixed IRS; RCV.NXT follows it.</summary>
    public void OnSyn(SeqNum sequence)
    {
        InitialSequence = sequence;
        Next = sequence + 1;

        // Our SYN offers the free buffer, unscaled (RFC 7323 §2.2), from IRS + 1.
        _offeredRightEdge = Next + Math.Min(_buffer.Window, ushort.MaxValue);
    }

    /// <summary>Copies readable bytes out; returns how many. Opens the window again when it has grown enough.</summary>
    public int Read(Span<byte> destination)
    {
        var n = _buffer.Read(destination);
        _connection.Statistics.ReceiveCopiedBytes += n;
        if (n > 0 && _requestedCapacity != 0)
        {
            ApplyRequestedCapacity();
        }

        if (n > 0 && ShouldSendWindowUpdate())
        {
            RequestAck();
        }

        return n;
    }

    /// <summary>Copies readable bytes out without consuming them.</summary>
    public int Peek(Span<byte> destination) => _buffer.Peek(destination);

    /// <summary>A receive buffer size asked for on the open connection and not yet in force (0: none).</summary>
    private int _requestedCapacity;

    /// <summary>
    /// SO_RCVBUF on an open connection: the buffer takes the new size once it is empty (at once, usually), and never
    /// below the window already offered (RFC 9293 §3.8.6: the right edge is not moved back). A larger window is
    /// announced at once. The window scale stays what the SYNs settled (RFC 7323 §2.2), so the window field saturates.
    /// </summary>
    public void Resize(int capacity)
    {
        _requestedCapacity = capacity;
        ApplyRequestedCapacity();
    }

    private void ApplyRequestedCapacity()
    {
        var capacity = _hasAdvertised ? Math.Max(_requestedCapacity, AdvertisedWindow) : _requestedCapacity;
        if (!_buffer.TryResize(capacity))
        {
            return;
        }

        if (capacity == _requestedCapacity)
        {
            _requestedCapacity = 0; // else held by the window offered: smaller once more of it is used
        }
        if (ShouldSendWindowUpdate())
        {
            RequestAck();
        }
    }

    /// <summary>Owes an ACK now and asks the engine to run output.</summary>
    public void RequestAck()
    {
        AckOwed = true;
        _connection.RequestOutput();
    }

    /// <summary>A reset or an abort: the bytes nobody will read go, and their blocks back to the pool.</summary>
    public void Clear() => _buffer.Clear();

    /// <summary>Drops the out-of-order data (memory pressure); returns the bytes dropped. See <see cref="ReceiveBuffer.PruneOutOfOrder"/>.</summary>
    public int PruneOutOfOrder()
    {
        var pruned = _buffer.PruneOutOfOrder();
        if (pruned > 0)
        {
            _memory.NotePruned(pruned);
        }

        return pruned;
    }

    /// <summary>§3.10.7.4 seventh check: places the text of an acceptable segment and decides how soon to acknowledge it.</summary>
    public void ReceiveText(SeqNum seq, ReadOnlySpan<byte> payload, bool fin)
    {
        // Trim what we already have (left of RCV.NXT) and what lies beyond the window.
        var skip = Next - seq;
        if (skip > 0)
        {
            // RFC 2883 §4 (1): report the duplicate in the first SACK block of the ACK it triggers.
            NoteDuplicate(seq, seq + Math.Min(skip, payload.Length));
            if (skip >= payload.Length)
            {
                RequestAck();
                if (fin)
                {
                    NoteFin(seq + payload.Length);
                }

                return;
            }

            payload = payload[skip..];
            seq += skip;
        }

        var room = _buffer.Window - (seq - Next);
        if (payload.Length > room)
        {
            payload = payload[..Math.Max(0, room)];
            fin = false;
        }

        var inOrder = seq == Next;
        var hadRanges = _buffer.RangeCount > 0;
        if (!inOrder && _buffer.Holds(seq.Value, (seq + payload.Length).Value))
        {
            // RFC 2883 §4 (2): an out-of-order segment we already hold: D-SACK it, nothing new to place.
            NoteDuplicate(seq, seq + payload.Length);
            _connection.SendAck();
            return;
        }

        int advance;
        if (inOrder && !hadRanges && _buffer.Count == 0 && payload.Length > 0
            && _connection.Observer is { } observer && observer.TryTakeInOrder(_connection, payload))
        {
            // The application took the bytes straight from the frame: the buffer only moves past them.
            _buffer.SkipTaken(payload.Length);
            _connection.Statistics.ReceiveCopiedBytes += payload.Length;
            advance = payload.Length;
        }
        else if (!TryTakeMemory(seq, payload.Length, inOrder))
        {
            // Not acknowledged, so the peer sends it again (RFC 9293 §3.10.7.4 allows dropping what cannot be held).
            _connection.Statistics.DroppedSegments++;
            if (_connection.State != TcpState.Closed)
            {
                RequestAck();
            }

            return;
        }
        else
        {
            advance = _buffer.Write(Next.Value, seq.Value, payload);
            if (advance < 0)
            {
                _connection.Statistics.DroppedSegments++;
                RequestAck();
                return;
            }

            _connection.Statistics.ReceiveCopiedBytes += payload.Length;
        }

        _lastReceivedSequence = seq;
        Next += advance;
        _connection.Statistics.BytesReceived += advance;
        if (!inOrder)
        {
            // RFC 5681 §4.2: an out-of-order segment is acknowledged at once, one ACK per segment even when
            // several arrive in one batch: the sender counts these duplicate ACKs to detect the loss.
            _connection.Statistics.OutOfOrderSegments++;
            _connection.SendAck();
        }
        else if (hadRanges)
        {
            // A segment that fills a hole is acknowledged at once too.
            AckOwed = true;
        }
        else
        {
            ScheduleDelayedAck(payload.Length);
        }

        _connection.RequestOutput();

        if (fin)
        {
            NoteFin(seq + payload.Length);
        }

        if (advance > 0)
        {
            _connection.Observer?.OnReadable(_connection);
        }
    }

    /// <summary>
    /// Whether the pool blocks a segment of <paramref name="length"/> bytes at <paramref name="seq"/> needs may be taken.
    /// Above the soft mark out-of-order data goes first, as Linux's tcp_prune_ofo_queue: the ranges beyond the segment,
    /// from the right (needed last), until its blocks fit; an out-of-order segment that still does not fit is dropped.
    /// In-order data within the advertised window is taken up to the limit; at the limit the stack prunes out-of-order
    /// data everywhere and resets the largest holders (<see cref="TcpLayer.RelieveMemory"/>).
    /// </summary>
    private bool TryTakeMemory(SeqNum seq, int length, bool inOrder)
    {
        var bytes = (long)_buffer.BlocksNeeded(Next.Value, seq.Value, length) * ReceiveBlockPool.BlockSize;
        if (bytes == 0)
        {
            return true;
        }

        if (!_memory.FitsBelowSoftMark(bytes))
        {
            var end = seq + length;
            while (bytes > 0 && _buffer.RangeCount > 0 && new SeqNum(_buffer.LastRangeStart) >= end && !_memory.FitsBelowSoftMark(bytes))
            {
                _memory.NotePruned(_buffer.PruneLastRange());
                bytes = (long)_buffer.BlocksNeeded(Next.Value, seq.Value, length) * ReceiveBlockPool.BlockSize;
            }

            if (bytes == 0)
            {
                return true;
            }

            if (!inOrder)
            {
                return _memory.FitsBelowSoftMark(bytes);
            }
        }

        if (_memory.Fits(bytes))
        {
            return true;
        }

        _layer.RelieveMemory(bytes);
        return _connection.State != TcpState.Closed && _memory.Fits(bytes);
    }

    /// <summary>Remembers [start, end) as received twice, for the D-SACK block of the next ACK (RFC 2883 §4).</summary>
    public void NoteDuplicate(SeqNum start, SeqNum end)
    {
        if (_connection.SackPermitted && start < end)
        {
            _dsackStart = start;
            _dsackEnd = end;
        }
    }

    /// <summary>A FIN at <paramref name="finSequence"/>: processed now when in order, else held until RCV.NXT reaches it.</summary>
    public void NoteFin(SeqNum finSequence)
    {
        if (_finReceived)
        {
            return;
        }

        if (finSequence == Next)
        {
            ProcessFin();
        }
        else if (finSequence > Next)
        {
            _outOfOrderFin = finSequence;
            _hasOutOfOrderFin = true;
        }
    }

    /// <summary>
    /// A FIN on a segment without text. Above a hole it is kept for later and acknowledged at once, as any out-of-order
    /// segment (RFC 5681 §4.2): the duplicate ACK tells the sender of the hole now, not when the hole fills.
    /// </summary>
    public void ReceiveFin(SeqNum finSequence)
    {
        NoteFin(finSequence);
        if (!_finReceived && finSequence > Next)
        {
            _connection.Statistics.OutOfOrderSegments++;
            _connection.SendAck();
        }
    }

    /// <summary>A FIN that arrived out of order is processed once the text before it has filled in.</summary>
    public void ProcessPendingFin()
    {
        if (_hasOutOfOrderFin && _outOfOrderFin == Next)
        {
            _hasOutOfOrderFin = false;
            ProcessFin();
        }
    }

    /// <summary>§3.10.7.4 eighth check: the FIN bit, in order. The connection changes state.</summary>
    private void ProcessFin()
    {
        _finReceived = true;
        Next++;
        RequestAck();
        _connection.OnFinReceived();
    }

    /// <summary>RFC 2018 §4: the first block holds the most recently received segment, the rest follow.</summary>
    public void AddSackBlocks(ref TcpOptions options)
    {
        var max = _connection.TimestampsEnabled ? 3 : TcpOptions.MaxSackBlocks;
        var count = 0;
        var first = 0;
        if (_dsackEnd != _dsackStart)
        {
            // RFC 2883 §4: the D-SACK block goes first, reported once.
            options.SetSackBlock(count++, new SackBlock(_dsackStart.Value, _dsackEnd.Value));
            first = 1;
            _dsackStart = _dsackEnd;
            _connection.Statistics.DsacksSent++;
        }

        for (var i = 0; i < _buffer.RangeCount && count < max; i++)
        {
            if (_lastReceivedSequence.InWindow(new SeqNum(_buffer.RangeStart(i)), new SeqNum(_buffer.RangeEnd(i))))
            {
                options.SetSackBlock(count++, new SackBlock(_buffer.RangeStart(i), _buffer.RangeEnd(i)));
                break;
            }
        }

        for (var i = 0; i < _buffer.RangeCount && count < max; i++)
        {
            if (count > first && options.GetSackBlock(first).Left == _buffer.RangeStart(i))
            {
                continue;
            }

            options.SetSackBlock(count++, new SackBlock(_buffer.RangeStart(i), _buffer.RangeEnd(i)));
        }

        options.SackBlockCount = count;
    }

    /// <summary>Receiver-side SWS avoidance (RFC 9293 §3.8.6.2.2): announce a larger window only when it grew by min(buffer/2, MSS).</summary>
    public bool ShouldSendWindowUpdate()
    {
        if (_connection.State is not (TcpState.Established or TcpState.FinWait1 or TcpState.FinWait2))
        {
            return false;
        }

        var rightEdge = Next + Window;
        var growth = rightEdge - _advertisedRightEdge;
        return growth >= Math.Min(_buffer.Capacity / 2, _connection.MaxSegmentSize);
    }

    /// <summary>A segment carrying an ACK left with <paramref name="window"/> (shifted by <paramref name="shift"/>): nothing is owed any more.</summary>
    public void OnAckSent(ushort window, int shift)
    {
        AckOwed = false;
        _delayedAckDeadline = 0;
        _bytesSinceAck = 0;
        _advertisedRightEdge = Next + ((uint)window << shift);
        _offeredRightEdge = _hasAdvertised ? SeqNum.Max(_offeredRightEdge, _advertisedRightEdge) : _advertisedRightEdge;
        _hasAdvertised = true;
    }

    /// <summary>The delayed-ACK timer expired: the ACK goes with the next output.</summary>
    public void OnDelayedAckTimer()
    {
        _delayedAckDeadline = 0;
        RequestAck();
    }

    public void CancelDelayedAck() => _delayedAckDeadline = 0;

    private void ScheduleDelayedAck(int payloadLength)
    {
        // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: an ACK for at least every second full-sized segment, counted in bytes
        // (2*RMSS of new data), so that one segment carrying two or more (coalesced by GRO/LRO on the way, or a
        // burst at a larger MSS) is acknowledged at once, not after the delay. Full-sized is what this peer can
        // send: the smaller of the two MSS less the timestamp option each segment carries (RFC 6691).
        _bytesSinceAck += payloadLength;

        // Sent at once, not at the end of the batch: a burst of segments read in one turn still gets its
        // ACKs, which clock the sender (no stretch ACKs).
        if (_connection.Settings.DelayedAck == TimeSpan.Zero || _bytesSinceAck >= _connection.Settings.DelayedAckSegments * _connection.MaxSegmentSize)
        {
            _connection.SendAck();
            return;
        }

        if (_delayedAckDeadline == 0)
        {
            _delayedAckDeadline = _connection.NowMicroseconds + (_connection.Settings.DelayedAck.Ticks / 10);
        }
    }
}
