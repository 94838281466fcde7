using System.Globalization;
using Vso.MemoryPinning;


namespace Vso.Transport.Api;

/// <summary>
/// The embedding API's send host: every SendAsync pins the caller's memory through the stack's
/// <see cref="ForeignMemoryPinner"/> (so it shows in <see cref="PinningMetrics"/>, mlocked if the stack asks)
/// in a slot whose generation changes each time it is reused. A descriptor names its slot and generation,
/// so a stale one (memory already released, another generation, a range outside the pinned memory) is
/// refused with <see cref="StaleDescriptorException"/> instead of being read. The caller's task completes
/// once the bytes are acknowledged and no lease (frame in flight on the link) remains: that is when the
/// pinner unpins and calls <see cref="OnUnpinned"/>. Engine thread only.
/// </summary>
internal sealed unsafe class SendRegistrations : IForeignPinObserver
{
    private readonly ForeignMemoryPinner _pinner;
    private readonly Stack<int> _free = new();
    private Slot[] _slots = new Slot[4];
    private int _used;

    public SendRegistrations(ForeignMemoryPinner pinner) => _pinner = pinner;

    /// <summary>Slots holding pinned memory (acknowledged ones still leased included).</summary>
    public int ActiveCount => _used - _free.Count;

    /// <summary>
    /// Pins <paramref name="data"/> and returns what the descriptor must carry. Throws (and takes no slot)
    /// if pinning fails, for example <see cref="MemoryLockException"/> when mlock is refused.
    /// </summary>
    public (int Slot, long Generation, nint Address) Register(ReadOnlyMemory<byte> data, TaskCompletionSource completion)
    {
        var reuse = _free.Count > 0;
        var index = reuse ? _free.Peek() : _used;
        var pin = _pinner.Pin(data, this, index);
        if (reuse)
        {
            _free.Pop();
        }
        else
        {
            if (index == _slots.Length)
            {
                Array.Resize(ref _slots, _slots.Length * 2);
            }

            _used++;
        }

        ref var slot = ref _slots[index];

        // Generations start at 1 and grow with every use of the slot, so (slot, generation) never repeats
        // and a zeroed descriptor never names live memory.
        slot.Generation++;
        slot.Pin = pin;
        slot.Completion = completion;
        slot.Live = true;
        slot.Acknowledged = false;
        slot.Error = null;
        return (index, slot.Generation, pin.Address);
    }

    /// <summary>The bytes of a descriptor range, after checking the descriptor is still valid. Reads nothing otherwise.</summary>
    public ReadOnlySpan<byte> Read(VsoSendRange descriptor, int offset, int length)
    {
        Validate(descriptor, offset, length);
        return new ReadOnlySpan<byte>((void*)(descriptor.Address + offset), length);
    }

    /// <summary>Validates the descriptor and leases its range from the pinner; the lease keeps the memory pinned.</summary>
    public PinLease Lease(VsoSendRange descriptor, int offset, int length)
    {
        ref var slot = ref Validate(descriptor, offset, length);
        var pin = slot.Pin!;
        return pin.Lease((int)(descriptor.Address - pin.Address) + offset, length);
    }

    /// <summary>Acknowledged (error null) or failed: release the pin; it is unpinned once no lease remains.</summary>
    public void Complete(VsoSendRange descriptor, Exception? error)
    {
        var index = descriptor.HostToken;
        if ((ulong)index >= (ulong)_used)
        {
            return;
        }

        ref var slot = ref _slots[index];
        if (!slot.Live || slot.Acknowledged || slot.Generation != descriptor.HostTag)
        {
            return;
        }

        slot.Acknowledged = true;
        slot.Error = error;

        // Unpins now if no frame holds a lease (OnUnpinned runs synchronously), else when the last lease ends.
        slot.Pin!.Dispose();
    }

    /// <summary>The pinner unpinned a registration's memory: free the slot and complete the caller's task.</summary>
    public void OnUnpinned(ForeignPin pin)
    {
        var index = (int)pin.Token;
        if ((uint)index >= (uint)_used || !ReferenceEquals(_slots[index].Pin, pin))
        {
            return;
        }

        ref var slot = ref _slots[index];
        var completion = slot.Completion;
        var error = slot.Error;
        slot = new Slot { Generation = slot.Generation };
        _free.Push(index);
        if (error is null)
        {
            completion?.TrySetResult();
        }
        else
        {
            completion?.TrySetException(error);
        }
    }

    private ref Slot Validate(VsoSendRange descriptor, int offset, int length)
    {
        var token = descriptor.HostToken;
        var generation = descriptor.HostTag;
        if ((ulong)token >= (ulong)_used)
        {
            throw Stale(StaleDescriptorReason.UnknownBlock, token, descriptor, offset, length, string.Create(CultureInfo.InvariantCulture, $"Send descriptor refused: it names slot {token}, which this connection never registered. No memory was read."));
        }

        var index = (int)token;
        ref var slot = ref _slots[index];
        if (!slot.Live || slot.Acknowledged || slot.Generation != generation)
        {
            var reason = slot.Generation != generation && slot.Live ? StaleDescriptorReason.GenerationMismatch : StaleDescriptorReason.Released;
            throw Stale(reason, token, descriptor, offset, length, string.Create(CultureInfo.InvariantCulture, $"Send descriptor refused: slot {index} generation {generation} is stale, its memory was already released (the slot is at generation {slot.Generation}, {(slot.Live && !slot.Acknowledged ? "in use by a later send" : "released")}). No memory was read."));
        }

        // The whole descriptor, and the asked range within it, must lie inside the pinned memory.
        var pin = slot.Pin!;
        var start = (long)descriptor.Address - (long)pin.Address;
        if (descriptor.Address < pin.Address
            || (ulong)descriptor.Length > (ulong)pin.Length
            || (ulong)start > (ulong)(pin.Length - descriptor.Length)
            || offset < 0
            || length < 0
            || offset > descriptor.Length - length)
        {
            throw Stale(StaleDescriptorReason.OutOfRange, token, descriptor, offset, length, string.Create(CultureInfo.InvariantCulture, $"Send descriptor refused: range 0x{descriptor.Address:x}+{offset}+{length} (descriptor length {descriptor.Length}) lies outside the pinned memory of slot {index} (0x{pin.Address:x}+{pin.Length}). No memory was read."));
        }

        return ref slot;
    }

    private static StaleDescriptorException Stale(StaleDescriptorReason reason, long token, VsoSendRange descriptor, int offset, int length, string message)
        => new(reason, (int)Math.Clamp(token, int.MinValue, int.MaxValue), descriptor.HostTag, descriptor.Address + offset, length, message);

    private struct Slot
    {
        public ForeignPin? Pin;
        public long Generation;
        public bool Live;
        public bool Acknowledged;
        public Exception? Error;
        public TaskCompletionSource? Completion;
    }
}
