using System.Numerics;

namespace Vso.Transport.Engine;

/// <summary>
/// A hierarchical hashed timer wheel (Varghese and Lauck, "Hashed and Hierarchical Timing Wheels", 1987) in
/// microsecond ticks: arm, re-arm and cancel are O(1) list operations on an entry the owner keeps, and nothing
/// is allocated per arm.
/// <para>
/// Level <c>L</c> has 64 slots of 64^L microseconds; an entry sits at the level of the highest 6-bit group in
/// which its deadline differs from the wheel's time, so the levels are ordered (every entry of level L is due
/// after every entry of the levels below) and within a level the occupied slots all lie at or after the
/// current one. A bitmap per level finds the next occupied slot in one instruction. When time reaches a slot
/// of a higher level its entries move down (cascade); a level-0 slot is one microsecond, so the entries there
/// are due exactly then. Entries keep their exact deadline: one never fires before it, and the next deadline
/// reported to the loop is exact. Entries due at the same microsecond fire in the order they reached their
/// level-0 slot (each list is first in, first out; a deadline already past goes ahead of later ones), which is deterministic in virtual time.
/// </para>
/// </summary>
internal sealed class TimerWheel<T>
    where T : class
{
    private const int SlotBits = 6;
    private const int SlotsPerLevel = 1 << SlotBits;
    private const int SlotMask = SlotsPerLevel - 1;

    /// <summary>10 levels of 6 bits span 2^60 µs (36,000 years): no deadline reaches past the top level.</summary>
    private const int Levels = 10;

    /// <summary>The list of entries taken from an expired level-0 slot and not yet handed out.</summary>
    private const int DueList = Levels * SlotsPerLevel;

    private readonly TimerEntry<T>?[] _heads = new TimerEntry<T>?[DueList + 1];
    private readonly TimerEntry<T>?[] _tails = new TimerEntry<T>?[DueList + 1];
    private readonly ulong[] _occupied = new ulong[Levels];
    private long _now;
    private long _nextDeadline;

    /// <summary>Armed entries.</summary>
    public int Count { get; private set; }

    /// <summary>The earliest deadline of an armed entry (exact), or <see cref="long.MaxValue"/> when none is armed.</summary>
    public long NextDeadline
    {
        get
        {
            if (_nextDeadline == 0)
            {
                _nextDeadline = FindNextDeadline();
            }

            return _nextDeadline;
        }
    }

    /// <summary>Arms <paramref name="entry"/> for <paramref name="deadline"/> (&gt; 0), moving it if it was armed.</summary>
    public void Arm(TimerEntry<T> entry, long deadline)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(deadline);
        if (entry.IsArmed)
        {
            Unlink(entry);
            if (entry.Deadline == _nextDeadline)
            {
                _nextDeadline = 0;
            }
        }
        else
        {
            Count++;
        }

        entry.Deadline = deadline;
        Insert(entry);
        if (_nextDeadline != 0 && deadline < _nextDeadline)
        {
            _nextDeadline = deadline;
        }
    }

    /// <summary>Disarms <paramref name="entry"/>; nothing happens when it is not armed.</summary>
    public void Cancel(TimerEntry<T> entry)
    {
        if (!entry.IsArmed)
        {
            return;
        }

        Unlink(entry);
        Count--;
        if (entry.Deadline == _nextDeadline)
        {
            _nextDeadline = 0;
        }

        entry.Deadline = 0;
    }

    /// <summary>
    /// Takes the next entry due at or before <paramref name="now"/>, earliest deadline first, and disarms it.
    /// Entries armed while the caller handles one are considered by the next call.
    /// </summary>
    public bool TryPopDue(long now, out TimerEntry<T> entry)
    {
        while (true)
        {
            if (_heads[DueList] is { } due)
            {
                Unlink(due);
                Count--;
                if (due.Deadline == _nextDeadline)
                {
                    _nextDeadline = 0;
                }

                due.Deadline = 0;
                entry = due;
                return true;
            }

            if (!TryFindFirstOccupied(out var level, out var slot) || SlotStart(level, slot) > now)
            {
                // Nothing due: time moves on to now, which stays before every occupied slot. A next deadline at or before
                // now can only be a slot's start whose entries were cancelled since: find it again.
                _now = Math.Max(_now, now);
                if (_nextDeadline <= now)
                {
                    _nextDeadline = 0;
                }

                entry = null!;
                return false;
            }

            _now = Math.Max(_now, SlotStart(level, slot));
            if (level == 0)
            {
                MoveList(slot, DueList);
            }
            else
            {
                // The next deadline may have been the slot's start (see FindNextDeadline): exact once it cascaded.
                Cascade((level * SlotsPerLevel) + slot);
                _nextDeadline = 0;
            }
        }
    }

    /// <summary>Lowest occupied level and its first occupied slot; at or after the wheel's time by construction.</summary>
    private bool TryFindFirstOccupied(out int level, out int slot)
    {
        for (level = 0; level < Levels; level++)
        {
            var bits = _occupied[level];
            if (bits != 0)
            {
                slot = BitOperations.TrailingZeroCount(bits);
                return true;
            }
        }

        level = 0;
        slot = 0;
        return false;
    }

    private long FindNextDeadline()
    {
        if (_heads[DueList] is not null)
        {
            return MinDeadline(DueList);
        }

        if (!TryFindFirstOccupied(out var level, out var slot))
        {
            return long.MaxValue;
        }

        // A level-0 slot holds one microsecond, except the current one, which also holds deadlines already past.
        var start = SlotStart(level, slot);
        if (level == 0 && start > _now)
        {
            return start;
        }

        // The exact earliest of a higher slot, unless the slot is crowded (thousands of connections): then its start,
        // a bound that wakes the loop early by at most the slot's span, where the slot cascades and the next answer
        // is exact. A timer still never fires before its deadline.
        var list = (level * SlotsPerLevel) + slot;
        return MinDeadline(list, MaxScannedEntries) is var min && min != 0 ? min : start;
    }

    /// <summary>Entries of one slot scanned for the exact next deadline before settling for the slot's start.</summary>
    private const int MaxScannedEntries = 64;

    /// <summary>The earliest deadline in a list, or 0 if it holds more than <paramref name="limit"/> entries.</summary>
    private long MinDeadline(int list, int limit = int.MaxValue)
    {
        var min = long.MaxValue;
        var scanned = 0;
        for (var e = _heads[list]; e is not null; e = e.Next)
        {
            if (++scanned > limit)
            {
                return 0;
            }

            min = Math.Min(min, e.Deadline);
        }

        return min;
    }

    /// <summary>The first microsecond of <paramref name="slot"/> at <paramref name="level"/>, in the wheel's current block of that level.</summary>
    private long SlotStart(int level, int slot)
    {
        var shift = level * SlotBits;
        var blockStart = _now & ~((1L << (shift + SlotBits)) - 1);
        return blockStart + ((long)slot << shift);
    }

    /// <summary>Links an entry into the slot its deadline takes relative to the wheel's time (past deadlines: the current slot).</summary>
    private void Insert(TimerEntry<T> entry)
    {
        var when = Math.Max(entry.Deadline, _now);
        var differing = (when ^ _now) | SlotMask;
        var level = (63 - BitOperations.LeadingZeroCount((ulong)differing)) / SlotBits;
        if (level >= Levels)
        {
            throw new ArgumentOutOfRangeException(nameof(entry), entry.Deadline, "Deadline beyond the timer wheel's range.");
        }

        var slot = (int)((when >> (level * SlotBits)) & SlotMask);
        var list = (level * SlotsPerLevel) + slot;
        if (entry.Deadline < _now)
        {
            // Already past (rare): the current slot, ahead of the entries due later, so the earliest still goes first.
            InsertBefore(list, FirstLaterThan(list, entry.Deadline), entry);
            return;
        }

        Append(list, entry);
    }

    private TimerEntry<T>? FirstLaterThan(int list, long deadline)
    {
        var e = _heads[list];
        while (e is not null && e.Deadline <= deadline)
        {
            e = e.Next;
        }

        return e;
    }

    private void InsertBefore(int list, TimerEntry<T>? before, TimerEntry<T> entry)
    {
        if (before is null)
        {
            Append(list, entry);
            return;
        }

        entry.Slot = list;
        entry.Next = before;
        entry.Previous = before.Previous;
        if (before.Previous is { } previous)
        {
            previous.Next = entry;
        }
        else
        {
            _heads[list] = entry;
        }

        before.Previous = entry;
    }

    /// <summary>Moves the entries of a higher-level slot whose time came to the levels below, in their order.</summary>
    private void Cascade(int list)
    {
        var e = _heads[list];
        _heads[list] = null;
        _tails[list] = null;
        _occupied[list / SlotsPerLevel] &= ~(1UL << (list % SlotsPerLevel));
        while (e is not null)
        {
            var next = e.Next;
            e.Previous = null;
            e.Next = null;
            e.Slot = TimerEntry<T>.Unlinked;
            Insert(e);
            e = next;
        }
    }

    private void MoveList(int from, int to)
    {
        for (var e = _heads[from]; e is not null; e = e.Next)
        {
            e.Slot = to;
        }

        if (_heads[to] is null)
        {
            _heads[to] = _heads[from];
        }
        else
        {
            _tails[to]!.Next = _heads[from];
            _heads[from]!.Previous = _tails[to];
        }

        _tails[to] = _tails[from];
        _heads[from] = null;
        _tails[from] = null;
        _occupied[from / SlotsPerLevel] &= ~(1UL << (from % SlotsPerLevel));
    }

    private void Append(int list, TimerEntry<T> entry)
    {
        entry.Slot = list;
        entry.Next = null;
        entry.Previous = _tails[list];
        if (_tails[list] is { } tail)
        {
            tail.Next = entry;
        }
        else
        {
            _heads[list] = entry;
            if (list != DueList)
            {
                _occupied[list / SlotsPerLevel] |= 1UL << (list % SlotsPerLevel);
            }
        }

        _tails[list] = entry;
    }

    private void Unlink(TimerEntry<T> entry)
    {
        var list = entry.Slot;
        if (entry.Previous is { } previous)
        {
            previous.Next = entry.Next;
        }
        else
        {
            _heads[list] = entry.Next;
        }

        if (entry.Next is { } next)
        {
            next.Previous = entry.Previous;
        }
        else
        {
            _tails[list] = entry.Previous;
        }

        if (_heads[list] is null && list != DueList)
        {
            _occupied[list / SlotsPerLevel] &= ~(1UL << (list % SlotsPerLevel));
        }

        entry.Previous = null;
        entry.Next = null;
        entry.Slot = TimerEntry<T>.Unlinked;
    }
}
