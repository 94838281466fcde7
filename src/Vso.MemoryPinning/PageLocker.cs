namespace Vso.MemoryPinning;

/// <summary>
/// mlock(2) with a reference count per page. The kernel does not nest locks: one munlock(2) undoes any
/// number of mlock calls on a page. Two owners whose ranges share a page (two small foreign buffers, a
/// foreign buffer inside a pool slab) would therefore unlock each other's memory. Every lock in the
/// process goes through one locker (<see cref="Process"/>): a page is mlocked when its count goes 0→1 and
/// munlocked when it goes 1→0.
/// </summary>
internal sealed class PageLocker
{
    private static readonly Lazy<PageLocker> s_process = new(() => new PageLocker(LinuxMemoryLockSyscalls.Instance, Environment.SystemPageSize));

    private readonly IMemoryLockSyscalls _syscalls;
    private readonly Lock _gate = new();
    private readonly Dictionary<nint, int> _pageCounts = [];
    private readonly long _pageSize;
    private long _lockedBytes;
    private long _mlockCalls;
    private long _munlockCalls;
    private bool? _hasCapIpcLock;

    internal PageLocker(IMemoryLockSyscalls syscalls, int pageSize)
    {
        if (pageSize <= 0 || (pageSize & (pageSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, "The page size must be a positive power of two.");
        }

        _syscalls = syscalls;
        _pageSize = pageSize;
    }

    /// <summary>The locker all of the process's locks go through.</summary>
    internal static PageLocker Process => s_process.Value;

    internal int PageSize => (int)_pageSize;

    /// <summary>Distinct bytes (whole pages) currently locked.</summary>
    internal long LockedBytes => Volatile.Read(ref _lockedBytes);

    internal int LockedPages
    {
        get
        {
            lock (_gate)
            {
                return _pageCounts.Count;
            }
        }
    }

    internal long MlockCalls => Volatile.Read(ref _mlockCalls);

    internal long MunlockCalls => Volatile.Read(ref _munlockCalls);

    /// <summary>Reference count of the page holding <paramref name="address"/>.</summary>
    internal int GetReferenceCount(nint address)
    {
        lock (_gate)
        {
            return _pageCounts.GetValueOrDefault(PageFloor(address));
        }
    }

    /// <summary>
    /// Locks every page touching [address, address+length). Pages already locked only gain a reference.
    /// Throws <see cref="MemoryLockException"/> (and locks nothing) if RLIMIT_MEMLOCK would be exceeded or
    /// mlock fails. Returns the page-rounded length this request holds; release it with
    /// <see cref="Unlock"/> of the same range.
    /// </summary>
    internal long Lock(nint address, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        var first = PageFloor(address);
        var end = PageCeiling(address + (nint)length);

        lock (_gate)
        {
            // Runs of pages with no reference yet: only these need mlock.
            var runs = new List<(nint Start, long Length)>();
            long newBytes = 0;
            nint runStart = 0;
            long runLength = 0;
            for (var page = first; page < end; page += (nint)_pageSize)
            {
                if (_pageCounts.ContainsKey(page))
                {
                    if (runLength > 0)
                    {
                        runs.Add((runStart, runLength));
                        runLength = 0;
                    }
                }
                else
                {
                    if (runLength == 0)
                    {
                        runStart = page;
                    }

                    runLength += _pageSize;
                    newBytes += _pageSize;
                }
            }

            if (runLength > 0)
            {
                runs.Add((runStart, runLength));
            }

            if (newBytes > 0)
            {
                // Before the first mlock of these pages: give a message that names the limit (getrlimit(2)).
                _hasCapIpcLock ??= _syscalls.HasCapIpcLock();
                var softLimit = _syscalls.GetMemlockSoftLimit();
                MemlockLimit.EnsureWithin(softLimit, _lockedBytes, newBytes, _hasCapIpcLock.Value);

                for (var i = 0; i < runs.Count; i++)
                {
                    _mlockCalls++;
                    var errno = _syscalls.Mlock(runs[i].Start, (nuint)runs[i].Length);
                    if (errno != 0)
                    {
                        // All or nothing: undo the runs this call locked.
                        for (var j = 0; j < i; j++)
                        {
                            _munlockCalls++;
                            _ = _syscalls.Munlock(runs[j].Start, (nuint)runs[j].Length);
                        }

                        throw MemoryLockException.MlockFailed(errno, newBytes, _lockedBytes, softLimit == Native.LibC.RLIM_INFINITY ? null : softLimit);
                    }
                }
            }

            for (var page = first; page < end; page += (nint)_pageSize)
            {
                _pageCounts[page] = _pageCounts.GetValueOrDefault(page) + 1;
            }

            Volatile.Write(ref _lockedBytes, _lockedBytes + newBytes);
            return end - first;
        }
    }

    /// <summary>Drops one reference of every page touching the range; munlocks pages whose count reaches zero.</summary>
    internal void Unlock(nint address, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        var first = PageFloor(address);
        var end = PageCeiling(address + (nint)length);

        lock (_gate)
        {
            for (var page = first; page < end; page += (nint)_pageSize)
            {
                if (!_pageCounts.ContainsKey(page))
                {
                    throw new InvalidOperationException($"Unbalanced unlock: page 0x{page:x} of range 0x{address:x}+{length} is not locked.");
                }
            }

            nint runStart = 0;
            long runLength = 0;
            long freed = 0;
            for (var page = first; page < end; page += (nint)_pageSize)
            {
                var count = _pageCounts[page] - 1;
                if (count > 0)
                {
                    _pageCounts[page] = count;
                    FlushRun(ref runStart, ref runLength);
                    continue;
                }

                _pageCounts.Remove(page);
                freed += _pageSize;
                if (runLength == 0)
                {
                    runStart = page;
                }

                runLength += _pageSize;
            }

            FlushRun(ref runStart, ref runLength);
            Volatile.Write(ref _lockedBytes, _lockedBytes - freed);
        }
    }

    private void FlushRun(ref nint start, ref long length)
    {
        if (length == 0)
        {
            return;
        }

        // munlock only fails for unmapped ranges (ENOMEM); the pages are then gone and nothing is locked.
        _munlockCalls++;
        _ = _syscalls.Munlock(start, (nuint)length);
        length = 0;
    }

    private nint PageFloor(nint address) => address & ~(nint)(_pageSize - 1);

    private nint PageCeiling(nint address) => (address + (nint)(_pageSize - 1)) & ~(nint)(_pageSize - 1);
}
