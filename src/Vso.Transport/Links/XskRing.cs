using System.Runtime.InteropServices;
using Vso.Transport.Native;

namespace Vso.Transport.Links;

/// <summary>
/// One of the four single-producer, single-consumer rings of an AF_XDP socket (Documentation/networking/af_xdp.rst),
/// mapped from the socket at its XDP_PGOFF_* offset: a producer index, a consumer index, a flags word and a power-of-two
/// array of descriptors (u64 UMEM addresses for the fill and completion rings, struct xdp_desc for RX and TX). Indexes
/// run free and wrap; an entry is index &amp; mask. The side that owns an index writes it with release semantics after
/// its descriptors, and reads the other side's with acquire semantics, as libbpf's xsk.h does. Owns the mapping.
/// </summary>
internal sealed unsafe class XskRing : IDisposable
{
    private readonly uint* _producer;
    private readonly uint* _consumer;
    private readonly uint* _flags;
    private readonly byte* _descriptors;
    private readonly uint _mask;
    private readonly int _entrySize;
    private readonly bool _isProducer;
    private void* _map;
    private readonly nuint _mapLength;

    // Our own index, published by Submit/Release; the other side's, as last read.
    private uint _local;
    private uint _cachedOther;

    private XskRing(void* map, nuint mapLength, in XdpRingOffset offset, uint size, int entrySize, bool isProducer)
    {
        _map = map;
        _mapLength = mapLength;
        var b = (byte*)map;
        _producer = (uint*)(b + offset.Producer);
        _consumer = (uint*)(b + offset.Consumer);
        _flags = (uint*)(b + offset.Flags);
        _descriptors = b + offset.Descriptors;
        _mask = size - 1;
        Size = size;
        _entrySize = entrySize;
        _isProducer = isProducer;
        _local = isProducer ? Volatile.Read(ref *_producer) : Volatile.Read(ref *_consumer);
        _cachedOther = isProducer ? Volatile.Read(ref *_consumer) : Volatile.Read(ref *_producer);
    }

    public uint Size { get; }

    /// <summary>Whether the kernel asks to be woken (XDP_RING_NEED_WAKEUP, with XDP_USE_NEED_WAKEUP): by sendto for TX, poll or recvfrom for fill.</summary>
    public bool NeedsWakeup => (Volatile.Read(ref *_flags) & LinuxNative.XDP_RING_NEED_WAKEUP) != 0;

    /// <summary>Maps a ring whose size was set with setsockopt; <paramref name="entrySize"/> is 8 (fill, completion) or 16 (RX, TX).</summary>
    public static XskRing Map(int fd, in XdpRingOffset offset, uint size, int entrySize, long pageOffset, bool isProducer, string what)
    {
        var length = (nuint)(offset.Descriptors + ((ulong)size * (ulong)entrySize));
        var map = LinuxNative.mmap(null, length, LinuxNative.PROT_READ | LinuxNative.PROT_WRITE, LinuxNative.MAP_SHARED | MapPopulate, fd, (nint)pageOffset);
        return map == (void*)-1
            ? throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"mmap of the AF_XDP {what} ring")
            : new XskRing(map, length, offset, size, entrySize, isProducer);
    }

    private const int MapPopulate = 0x8000;

    // ---- producer side (fill, TX) ----

    /// <summary>Free entries: the consumer index is re-read only when the cached one says the ring is full.</summary>
    public uint Free(uint wanted)
    {
        var free = Size - (_local - _cachedOther);
        if (free >= wanted)
        {
            return free;
        }

        _cachedOther = Volatile.Read(ref *_consumer);
        return Size - (_local - _cachedOther);
    }

    /// <summary>The fill or completion entry at <paramref name="index"/> (our free-running index plus an offset).</summary>
    public ref ulong Address(uint index) => ref *(ulong*)(_descriptors + ((index & _mask) * 8));

    public ref XdpDesc Descriptor(uint index) => ref *(XdpDesc*)(_descriptors + ((index & _mask) * 16));

    /// <summary>Our next index: the first entry to produce or to consume.</summary>
    public uint Next => _local;

    /// <summary>Publishes <paramref name="count"/> produced entries (release: the descriptors are written first).</summary>
    public void Submit(uint count)
    {
        _local += count;
        Volatile.Write(ref *_producer, _local);
    }

    // ---- consumer side (RX, completion) ----

    /// <summary>Entries ready to consume, up to <paramref name="wanted"/>; the producer index is re-read when the cache runs dry.</summary>
    public uint Available(uint wanted)
    {
        var available = _cachedOther - _local;
        if (available == 0)
        {
            _cachedOther = Volatile.Read(ref *_producer);
            available = _cachedOther - _local;
        }

        return Math.Min(available, wanted);
    }

    /// <summary>Hands <paramref name="count"/> consumed entries back to the kernel (release: our reads of them are done).</summary>
    public void Release(uint count)
    {
        _local += count;
        Volatile.Write(ref *_consumer, _local);
    }

    /// <summary>Entries the kernel has not consumed yet (producer side): what a TX kick still has to send.</summary>
    public uint Outstanding => _local - Volatile.Read(ref *_consumer);

    public bool IsProducer => _isProducer;

    public void Dispose()
    {
        if (_map != null)
        {
            _ = LinuxNative.munmap(_map, _mapLength);
            _map = null;
        }
    }
}
