namespace Vso.Transport.Tcp;

/// <summary>
/// Fixed-size blocks for received bytes, shared by the connections of one stack. Engine thread only, so no locks.
/// A block returned is kept for the next segment up to <see cref="MaxRetained"/> blocks; beyond that it goes to the
/// GC, so memory that a burst of connections took comes back once they have been read or closed.
/// </summary>
internal sealed class ReceiveBlockPool
{
    /// <summary>Bytes per block: about eleven full-sized Ethernet segments, small enough that an idle connection holds none for long.</summary>
    public const int BlockSize = 16 * 1024;

    /// <summary>Slot tables kept for reuse (at most this many).</summary>
    private const int MaxRetainedTables = 64;

    private readonly byte[]?[] _free;
    private int _freeCount;
    private readonly byte[]?[]?[] _freeTables = new byte[]?[]?[MaxRetainedTables];
    private int _freeTableCount;

    public ReceiveBlockPool(int maxRetained) => _free = new byte[]?[maxRetained];

    /// <summary>Most free blocks kept for reuse.</summary>
    public int MaxRetained => _free.Length;

    /// <summary>Free blocks kept now.</summary>
    public int Retained => _freeCount;

    public byte[] Rent()
    {
        if (_freeCount > 0)
        {
            var block = _free[--_freeCount]!;
            _free[_freeCount] = null;
            return block;
        }

        return GC.AllocateUninitializedArray<byte>(BlockSize);
    }

    public void Return(byte[] block)
    {
        if (_freeCount < _free.Length)
        {
            _free[_freeCount++] = block;
        }
    }

    /// <summary>
    /// A receive buffer's slot table (one reference per block of its ring), all null. A buffer holds its table only while
    /// it holds a block, so an idle connection holds neither; tables of another length than asked are not reused.
    /// </summary>
    public byte[]?[] RentTable(int slots)
    {
        if (_freeTableCount > 0 && _freeTables[_freeTableCount - 1]!.Length == slots)
        {
            var table = _freeTables[--_freeTableCount]!;
            _freeTables[_freeTableCount] = null;
            return table;
        }

        return new byte[]?[slots];
    }

    /// <summary>Takes back a table whose every slot is null.</summary>
    public void ReturnTable(byte[]?[] table)
    {
        if (_freeTableCount < _freeTables.Length)
        {
            _freeTables[_freeTableCount++] = table;
        }
    }
}
