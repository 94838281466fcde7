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

    private readonly byte[]?[] _free;
    private int _freeCount;

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
}
