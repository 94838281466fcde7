namespace Vso.Transport.Tcp;

/// <summary>
/// The receive memory of one stack and its limit (<see cref="TcpSettings.MemoryLimit"/>), after Linux's tcp_mem:
/// below the soft mark (three quarters of the limit) every connection receives as configured; above it windows stop
/// opening and out-of-order data is dropped first; at the limit new connections are refused and the largest holders
/// are reset. Counts the blocks taken from its <see cref="ReceiveBlockPool"/> (the currency of the limit) and the bytes
/// they hold by kind. Engine thread only.
/// </summary>
internal sealed class MemoryBudget
{
    /// <summary>Free blocks kept for reuse at most (4 MiB): enough for a few full windows in flight, small beside the limit.</summary>
    private const int MaxRetainedBlocks = 256;

    private readonly TcpMetrics? _metrics;

    public MemoryBudget(long limit, TcpMetrics? metrics)
    {
        _metrics = metrics;
        Limit = limit;
        SoftMark = limit - (limit / 4);
        Pool = new ReceiveBlockPool(limit == 0 ? MaxRetainedBlocks : (int)Math.Clamp(limit / ReceiveBlockPool.BlockSize, 1, MaxRetainedBlocks));
    }

    public ReceiveBlockPool Pool { get; }

    /// <summary>Bytes of receive memory the stack may hold; 0 for no limit.</summary>
    public long Limit { get; }

    /// <summary>Above this many bytes held, windows stop opening and out-of-order data goes first.</summary>
    public long SoftMark { get; }

    /// <summary>Block bytes held by connections (what the limit counts).</summary>
    public long HeldBytes { get; private set; }

    /// <summary>In-order bytes received and not yet read, over every connection.</summary>
    public long InOrderBytes { get; private set; }

    /// <summary>Out-of-order bytes held beyond RCV.NXT, over every connection.</summary>
    public long OutOfOrderBytes { get; private set; }

    /// <summary>Out-of-order bytes dropped to relieve memory (RFC 2018 §8 reneging when they had been SACKed).</summary>
    public long PrunedBytes { get; private set; }

    /// <summary>SYNs dropped because the stack had no receive memory left for another connection.</summary>
    public long RefusedConnections { get; private set; }

    /// <summary>Connections reset because they held the most when the limit was reached.</summary>
    public long ResetConnections { get; private set; }

    /// <summary>Held bytes at or above the soft mark: windows stop opening.</summary>
    public bool UnderPressure => Limit != 0 && HeldBytes >= SoftMark;

    /// <summary>Not one more block fits under the limit: a new connection could not receive a byte.</summary>
    public bool IsExhausted => Limit != 0 && HeldBytes + ReceiveBlockPool.BlockSize > Limit;

    /// <summary>Whether <paramref name="bytes"/> more stay within the limit.</summary>
    public bool Fits(long bytes) => Limit == 0 || HeldBytes + bytes <= Limit;

    /// <summary>Whether <paramref name="bytes"/> more stay below the soft mark.</summary>
    public bool FitsBelowSoftMark(long bytes) => Limit == 0 || HeldBytes + bytes < SoftMark;

    public byte[] Rent()
    {
        HeldBytes += ReceiveBlockPool.BlockSize;
        return Pool.Rent();
    }

    public void Return(byte[] block)
    {
        HeldBytes -= ReceiveBlockPool.BlockSize;
        Pool.Return(block);
    }

    public void AddInOrder(long delta) => InOrderBytes += delta;

    public void AddOutOfOrder(long delta) => OutOfOrderBytes += delta;

    public void NotePruned(long bytes)
    {
        PrunedBytes += bytes;
        _metrics?.PrunedBytes.Add(bytes);
    }

    public void NoteRefused()
    {
        RefusedConnections++;
        _metrics?.ConnectionsRefusedByMemory.Add(1);
    }

    public void NoteReset()
    {
        ResetConnections++;
        _metrics?.ConnectionsResetByMemory.Add(1);
    }
}
