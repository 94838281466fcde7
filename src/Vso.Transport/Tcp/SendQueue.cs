namespace Vso.Transport.Tcp;

/// <summary>
/// The retransmission queue: descriptors chained in sequence order from the oldest unacknowledged byte
/// to the last byte the application queued. It holds no bytes. A cursor remembers where the last lookup
/// ended, so building consecutive segments walks the chain once, not once per segment.
/// </summary>
internal sealed class SendQueue
{
    private readonly Stack<SendDescriptor> _pool = new();
    private SendDescriptor? _head;
    private SendDescriptor? _tail;
    private SendDescriptor? _cursor;

    /// <summary>Sequence number of the first byte still held (snd.una once data is acknowledged).</summary>
    public uint StartSequence { get; private set; }

    /// <summary>Sequence number one past the last queued byte.</summary>
    public uint EndSequence { get; private set; }

    /// <summary>Bytes queued and not yet acknowledged.</summary>
    public long Length => (uint)(EndSequence - StartSequence);

    public bool IsEmpty => _head is null;

    public int DescriptorCount { get; private set; }

    public void Reset(uint sequence)
    {
        StartSequence = sequence;
        EndSequence = sequence;
    }

    /// <summary>The connection is reused (<see cref="TcpLayer"/>'s pool): empty, from sequence 0; the descriptors stay pooled.</summary>
    public void Recycle()
    {
        for (var d = _head; d is not null;)
        {
            var next = d.Next;
            Return(d);
            d = next;
        }

        _head = null;
        _tail = null;
        _cursor = null;
        StartSequence = 0;
        EndSequence = 0;
        DescriptorCount = 0;
    }

    public SendDescriptor Rent() => _pool.Count > 0 ? _pool.Pop() : new SendDescriptor();

    /// <summary>Appends a filled descriptor; it gets the next sequence number.</summary>
    public void Append(SendDescriptor descriptor)
    {
        descriptor.Sequence = EndSequence;
        descriptor.Next = null;
        EndSequence += (uint)descriptor.Length;
        if (_tail is null)
        {
            _head = descriptor;
        }
        else
        {
            _tail.Next = descriptor;
        }

        _tail = descriptor;
        DescriptorCount++;
    }

    /// <summary>
    /// Releases every descriptor whose last byte lies before <paramref name="acknowledged"/> to the host,
    /// which may then free the memory (DESIGN.md §2: ACK → release).
    /// </summary>
    public void Acknowledge(uint acknowledged, ISendHost host)
    {
        if (SequenceNumber.Gt(acknowledged, EndSequence))
        {
            acknowledged = EndSequence;
        }

        while (_head is { } d && SequenceNumber.Le(d.Sequence + (uint)d.Length, acknowledged))
        {
            _head = d.Next;
            if (_cursor == d)
            {
                _cursor = null;
            }

            DescriptorCount--;
            host.Acknowledged(d);
            Return(d);
        }

        if (_head is null)
        {
            _tail = null;
        }

        if (SequenceNumber.Gt(acknowledged, StartSequence))
        {
            StartSequence = acknowledged;
        }
    }

    /// <summary>Hands every descriptor back to the host as failed: nothing written is dropped silently.</summary>
    public void FailAll(ISendHost host, Exception error)
    {
        while (_head is { } d)
        {
            _head = d.Next;
            host.Failed(d, error);
            Return(d);
        }

        _tail = null;
        _cursor = null;
        DescriptorCount = 0;
        StartSequence = EndSequence;
    }

    /// <summary>Finds the descriptor holding <paramref name="sequence"/> and the offset of that byte in it.</summary>
    public SendDescriptor? Locate(uint sequence, out int offset)
    {
        var d = _cursor is { } c && SequenceNumber.Le(c.Sequence, sequence) ? c : _head;
        while (d is not null)
        {
            var diff = SequenceNumber.Diff(sequence, d.Sequence);
            if (diff >= 0 && diff < d.Length)
            {
                _cursor = d;
                offset = diff;
                return d;
            }

            d = d.Next;
        }

        offset = 0;
        return null;
    }

    /// <summary>The segment being sent ends at the last queued byte and carries PSH: remember it on the last descriptor.</summary>
    public void MarkLastPushed()
    {
        if (_tail is { } tail)
        {
            tail.Pushed = true;
        }
    }

    /// <summary>
    /// Whether [<paramref name="sequence"/>, +<paramref name="length"/>) holds the last byte of a descriptor whose first
    /// transmission ended with PSH: the segment then carries PSH too (as Linux keeps a segment's flags, and merges them
    /// when it resends two segments as one).
    /// </summary>
    public bool CoversPushedEnd(uint sequence, int length)
    {
        var end = sequence + (uint)length;
        for (var d = Locate(sequence, out _); d is not null && SequenceNumber.Lt(d.Sequence, end); d = d.Next)
        {
            if (d.Pushed && SequenceNumber.Le(d.Sequence + (uint)d.Length, end))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// How many of <paramref name="length"/> bytes from <paramref name="sequence"/> fit in at most
    /// <paramref name="maxPieces"/> descriptors: a gathered frame has a bounded number of segments.
    /// </summary>
    public int ClampToPieces(uint sequence, int length, int maxPieces)
    {
        var d = Locate(sequence, out var offset);
        var total = 0;
        for (var piece = 0; d is not null && piece < maxPieces && total < length; piece++)
        {
            total += d.Length - offset;
            offset = 0;
            d = d.Next;
        }

        return Math.Min(total, length);
    }

    private void Return(SendDescriptor descriptor)
    {
        descriptor.Reset();
        _pool.Push(descriptor);
    }
}
