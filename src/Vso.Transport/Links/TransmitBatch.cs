using System.Runtime.CompilerServices;
using Vso.MemoryPinning;

namespace Vso.Transport.Links;

/// <summary>
/// Frames on their way to a link. Each frame has a linear part in the batch's own pinned buffer
/// (Ethernet, IP and TCP headers, plus the payload in Copy mode) and up to <see cref="MaxGather"/>
/// gather segments read straight from the host's pinned memory (Pinned mode). Leases taken while a
/// frame was built are ended by <see cref="Clear"/>, after the link has sent the batch.
/// A frame committed with a segment size (<see cref="GsoSize"/>) is a TCP super-segment that the link has the
/// kernel cut into segments of that many payload bytes (generic segmentation offload, <see cref="ILink.MaxOffloadPayload"/>).
/// </summary>
internal sealed unsafe class TransmitBatch
{
    /// <summary>Gather segments per frame: enough for a 64 KiB super-segment over 4 KiB blocks.</summary>
    public const int MaxGather = 24;

    private readonly byte[] _buffer;
    private readonly int[] _linearLength;
    private readonly int[] _gatherCount;
    private readonly int[] _gsoSize;
    private readonly int[] _firstLease;
    private readonly int[] _endLease;
    private readonly GatherSegment[] _gathers;
    private readonly PinLease[] _leases;
    private int _leaseCount;

    /// <summary>Index in <see cref="_leases"/> of the first lease taken for the frame being built.</summary>
    private int _buildingFirstLease;

    public TransmitBatch(int capacity, int frameCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(frameCapacity, 64);
        Capacity = capacity;
        FrameCapacity = frameCapacity;
        _buffer = GC.AllocateArray<byte>(capacity * frameCapacity, pinned: true);
        _linearLength = new int[capacity];
        _gatherCount = new int[capacity];
        _gsoSize = new int[capacity];
        _firstLease = new int[capacity];
        _endLease = new int[capacity];
        _gathers = new GatherSegment[capacity * MaxGather];
        _leases = new PinLease[capacity * MaxGather];
    }

    public int Capacity { get; }

    /// <summary>Bytes available for one frame's linear part (Ethernet header plus IP MTU).</summary>
    public int FrameCapacity { get; }

    public int Count { get; private set; }

    public bool IsFull => Count == Capacity;

    /// <summary>Starts a new frame and returns its whole linear buffer; call <see cref="Commit"/> when built.</summary>
    public Span<byte> Begin()
    {
        if (IsFull)
        {
            throw new InvalidOperationException("Transmit batch is full; flush it first.");
        }

        _gatherCount[Count] = 0;
        _buildingFirstLease = _leaseCount;
        return _buffer.AsSpan(Count * FrameCapacity, FrameCapacity);
    }

    /// <summary>The linear buffer of the frame being built (after <see cref="Begin"/>, before <see cref="Commit"/>).</summary>
    public Span<byte> Building => _buffer.AsSpan(Count * FrameCapacity, FrameCapacity);

    /// <summary>Adds pinned memory to the frame being built. Returns false when the frame has no gather slot left.</summary>
    public bool TryAddGather(nint address, int length)
    {
        var n = _gatherCount[Count];
        if (n == MaxGather)
        {
            return false;
        }

        _gathers[(Count * MaxGather) + n] = new GatherSegment(address, length);
        _gatherCount[Count] = n + 1;
        return true;
    }

    /// <summary>
    /// Keeps a lease alive until the batch has been sent. The batch has room for <see cref="MaxGather"/> leases per frame;
    /// beyond that it throws <see cref="InvalidOperationException"/> and does not take the lease (the caller still owns it).
    /// </summary>
    public void HoldLease(PinLease lease)
    {
        if (!CanHoldLease)
        {
            throw new InvalidOperationException($"Transmit batch already holds {_leaseCount} pin leases, its capacity; the lease was not taken.");
        }

        _leases[_leaseCount++] = lease;
    }

    /// <summary>Whether <see cref="HoldLease"/> can take one more lease.</summary>
    public bool CanHoldLease => _leaseCount < _leases.Length;

    public int FreeGatherSlots => MaxGather - _gatherCount[Count];

    /// <summary>
    /// Ends the frame being built. <paramref name="gsoSize"/> &gt; 0 marks a TCP super-segment (only for a link whose
    /// <see cref="ILink.MaxOffloadPayload"/> is not 0): its TCP checksum field holds the pseudo-header sum only, and the
    /// link cuts it into segments of <paramref name="gsoSize"/> payload bytes with their checksums.
    /// </summary>
    public void Commit(int linearLength, int gsoSize = 0)
    {
        _linearLength[Count] = linearLength;
        _gsoSize[Count] = gsoSize;
        _firstLease[Count] = _buildingFirstLease;
        _endLease[Count] = _leaseCount;
        Count++;
        _buildingFirstLease = _leaseCount; // the leases so far belong to committed frames: Cancel leaves them alone
    }

    /// <summary>Payload bytes per segment of a super-segment, or 0 for an ordinary frame.</summary>
    public int GsoSize(int index) => _gsoSize[index];

    /// <summary>
    /// Abandons the frame being built and ends the leases taken for it: nothing will read them, and cancelled frames
    /// must not use up the lease room of the frames that are sent.
    /// </summary>
    public void Cancel()
    {
        _gatherCount[Count] = 0;
        for (var i = _buildingFirstLease; i < _leaseCount; i++)
        {
            _leases[i].Dispose();
            _leases[i] = default;
        }

        _leaseCount = _buildingFirstLease;
    }

    public ReadOnlySpan<byte> Linear(int index) => _buffer.AsSpan(index * FrameCapacity, _linearLength[index]);

    /// <summary>Address of the linear part of a frame, for links that build iovecs.</summary>
    public nint LinearAddress(int index) => (nint)Unsafe.AsPointer(ref _buffer[index * FrameCapacity]);

    public ReadOnlySpan<GatherSegment> Gathers(int index) => _gathers.AsSpan(index * MaxGather, _gatherCount[index]);

    /// <summary>Total length of a frame on the wire: linear part plus gathered bytes.</summary>
    public int FrameLength(int index)
    {
        var length = _linearLength[index];
        foreach (var g in Gathers(index))
        {
            length += g.Length;
        }

        return length;
    }

    /// <summary>Copies a whole frame (linear part, then gathers) into <paramref name="destination"/>; returns its length.</summary>
    public int CopyFrame(int index, Span<byte> destination)
    {
        if (_gsoSize[index] != 0)
        {
            throw new InvalidOperationException("A super-segment reached a link without segmentation offload.");
        }

        var linear = Linear(index);
        linear.CopyTo(destination);
        var offset = linear.Length;
        foreach (var g in Gathers(index))
        {
            new ReadOnlySpan<byte>((void*)g.Address, g.Length).CopyTo(destination[offset..]);
            offset += g.Length;
        }

        return offset;
    }

    /// <summary>Leases held for frame <paramref name="index"/>: one per gather segment, in the same order.</summary>
    internal int LeaseCount(int index) => _endLease[index] - _firstLease[index];

    /// <summary>
    /// Hands the link lease <paramref name="k"/> of frame <paramref name="index"/>: <see cref="Clear"/> no longer ends it,
    /// the link does, once the device is done with the memory (an AF_XDP completion).
    /// </summary>
    internal PinLease TakeLease(int index, int k)
    {
        var i = _firstLease[index] + k;
        var lease = _leases[i];
        _leases[i] = default;
        return lease;
    }

    /// <summary>Ends every lease and empties the batch. Call after the link's Transmit returned.</summary>
    public void Clear()
    {
        for (var i = 0; i < _leaseCount; i++)
        {
            _leases[i].Dispose();
            _leases[i] = default;
        }

        _leaseCount = 0;
        _buildingFirstLease = 0;
        Count = 0;
    }
}
