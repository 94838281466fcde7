using System.Buffers;
using Vso.MemoryPinning;
using Vso.Transport.Tcp;

namespace Vso.Transport.Api;

/// <summary>
/// The embedding API's send host: every SendAsync pins the caller's memory in a slot whose generation
/// changes when it is freed. A descriptor names its slot and generation, so a stale one (memory already
/// released) is refused with <see cref="StaleDescriptorException"/> instead of being read. The caller's
/// task completes once the bytes are acknowledged and no lease (frame in flight on the link) remains.
/// Engine thread only.
/// </summary>
internal sealed unsafe class SendRegistrations
{
    private readonly PinAccounting _accounting;
    private readonly Stack<int> _free = new();
    private Slot[] _slots = new Slot[4];
    private int _used;

    public SendRegistrations(PinAccounting accounting) => _accounting = accounting;

    public (int Slot, long Generation, nint Address) Register(ReadOnlyMemory<byte> data, TaskCompletionSource completion)
    {
        var index = _free.Count > 0 ? _free.Pop() : _used++;
        if (index == _slots.Length)
        {
            Array.Resize(ref _slots, _slots.Length * 2);
        }

        ref var slot = ref _slots[index];
        slot.Handle = data.Pin();
        slot.Address = (nint)slot.Handle.Pointer;
        slot.Length = data.Length;
        slot.Completion = completion;
        slot.Live = true;
        slot.Acknowledged = false;
        slot.Leases = 0;
        slot.Error = null;
        _accounting.AddPinned(data.Length);
        return (index, slot.Generation, slot.Address);
    }

    /// <summary>The bytes of a descriptor range, after checking the descriptor is still valid.</summary>
    public ReadOnlySpan<byte> Read(SendDescriptor descriptor, int offset, int length)
    {
        ref var slot = ref Validate(descriptor, offset, length);
        return new ReadOnlySpan<byte>((void*)(descriptor.Address + offset), length);
    }

    public nint BeginLease(SendDescriptor descriptor, int offset, int length)
    {
        ref var slot = ref Validate(descriptor, offset, length);
        slot.Leases++;
        _accounting.AddLeased(length);
        return descriptor.Address + offset;
    }

    public void EndLease(int index, int length)
    {
        ref var slot = ref _slots[index];
        slot.Leases--;
        _accounting.AddLeased(-length);
        if (slot.Leases == 0 && slot.Acknowledged)
        {
            Release(index);
        }
    }

    /// <summary>Acknowledged (error null) or failed: release once no lease remains.</summary>
    public void Complete(SendDescriptor descriptor, Exception? error)
    {
        var index = (int)descriptor.HostToken;
        if ((uint)index >= (uint)_used || !_slots[index].Live || _slots[index].Generation != descriptor.HostTag)
        {
            return;
        }

        ref var slot = ref _slots[index];
        slot.Acknowledged = true;
        slot.Error = error;
        if (slot.Leases == 0)
        {
            Release(index);
        }
    }

    private ref Slot Validate(SendDescriptor descriptor, int offset, int length)
    {
        var index = (int)descriptor.HostToken;
        if ((uint)index >= (uint)_used)
        {
            throw new StaleDescriptorException($"Send descriptor names slot {index}, which this connection never registered.");
        }

        ref var slot = ref _slots[index];
        if (!slot.Live || slot.Generation != descriptor.HostTag || slot.Acknowledged)
        {
            throw new StaleDescriptorException($"Send descriptor for slot {index} generation {descriptor.HostTag} is stale: its memory was already released (slot is at generation {slot.Generation}).");
        }

        if (descriptor.Address < slot.Address || offset < 0 || length < 0 || descriptor.Address + offset + length > slot.Address + slot.Length)
        {
            throw new StaleDescriptorException($"Send descriptor range {descriptor.Address + offset:x}+{length} lies outside the pinned memory of slot {index}.");
        }

        return ref slot;
    }

    private void Release(int index)
    {
        ref var slot = ref _slots[index];
        slot.Handle.Dispose();
        _accounting.AddPinned(-slot.Length);
        var completion = slot.Completion;
        var error = slot.Error;
        slot = new Slot { Generation = slot.Generation + 1 };
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

    private struct Slot
    {
        public MemoryHandle Handle;
        public nint Address;
        public int Length;
        public long Generation;
        public int Leases;
        public bool Live;
        public bool Acknowledged;
        public Exception? Error;
        public TaskCompletionSource? Completion;
    }
}
