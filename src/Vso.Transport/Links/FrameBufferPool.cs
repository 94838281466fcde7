namespace Vso.Transport.Links;

/// <summary>
/// Fixed-size frame buffers for one link, kept on a free stack. Unlike <c>ArrayPool&lt;byte&gt;.Shared</c>,
/// which keeps a few dozen arrays per size and core, it keeps every buffer it ever handed out, so a wire
/// with hundreds of frames in flight (1 Gbit/s over 10 ms is about 850) stops allocating once it has
/// reached its peak. Single-threaded, like the link that owns it.
/// </summary>
internal sealed class FrameBufferPool(int bufferSize)
{
    private byte[][] _free = new byte[16][];
    private int _count;

    public int BufferSize { get; } = bufferSize;

    /// <summary>Buffers allocated so far (free plus in use).</summary>
    public int Allocated { get; private set; }

    public byte[] Rent()
    {
        if (_count > 0)
        {
            var buffer = _free[--_count];
            _free[_count] = null!;
            return buffer;
        }

        Allocated++;
        return GC.AllocateUninitializedArray<byte>(BufferSize);
    }

    public void Return(byte[] buffer)
    {
        if (_count == _free.Length)
        {
            Array.Resize(ref _free, _free.Length * 2);
        }

        _free[_count++] = buffer;
    }
}
