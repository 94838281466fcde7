namespace Vso.Transport.Tcp;

/// <summary>
/// One contiguous run of the host's pinned memory queued for sending: where it is, how long, which
/// sequence number its first byte has, and the next descriptor in sequence order. The sender keeps
/// only these; the bytes stay with the host, which is asked for them each time a segment is built.
/// Pooled per connection: never keep a reference after <see cref="ISendHost.Acknowledged"/> or
/// <see cref="ISendHost.Failed"/>.
/// </summary>
internal sealed class SendDescriptor
{
    /// <summary>Address of the first byte, inside memory the host keeps pinned until acknowledged.</summary>
    public nint Address { get; internal set; }

    public int Length { get; internal set; }

    /// <summary>Sequence number of the first byte.</summary>
    public uint Sequence { get; internal set; }

    public SendDescriptor? Next { get; internal set; }

    /// <summary>The host's own identification of the memory (for example a block id and generation); the sender never reads it.</summary>
    public long HostToken { get; internal set; }

    /// <summary>A second host word, for hosts that need one (the block's generation, a registration slot).</summary>
    public long HostTag { get; internal set; }

    /// <summary>
    /// A segment that ended at this descriptor's last byte carried PSH when it was first sent (it emptied the queue,
    /// RFC 1122 §4.2.2.2); a retransmission that covers that byte carries PSH again.
    /// </summary>
    public bool Pushed { get; internal set; }

    internal void Reset()
    {
        Pushed = false;
        Address = 0;
        Length = 0;
        Sequence = 0;
        Next = null;
        HostToken = 0;
        HostTag = 0;
    }
}
