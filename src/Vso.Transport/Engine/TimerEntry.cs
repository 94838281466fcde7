namespace Vso.Transport.Engine;

/// <summary>
/// One owner's place in a <see cref="TimerWheel{T}"/>: its exact deadline and its links in a slot list.
/// Allocated once per owner and re-armed in place, so arming and cancelling allocate nothing.
/// </summary>
internal sealed class TimerEntry<T>
    where T : class
{
    /// <summary>Slot index of an entry that is in no list.</summary>
    internal const int Unlinked = -1;

    public TimerEntry(T owner) => Owner = owner;

    /// <summary>Whose entry this is; a queue that reuses entries gives it to the next owner once disarmed.</summary>
    public T Owner { get; internal set; }

    /// <summary>The exact deadline in microseconds the entry is armed for; 0 while it is not armed.</summary>
    public long Deadline { get; internal set; }

    public bool IsArmed => Slot != Unlinked;

    // Written by the wheel only: the slot list the entry is in and its neighbours there.
    internal int Slot = Unlinked;
    internal TimerEntry<T>? Previous;
    internal TimerEntry<T>? Next;
}
