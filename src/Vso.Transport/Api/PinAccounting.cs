namespace Vso.Transport.Api;

/// <summary>Bytes of application memory a stack holds pinned, and under lease to its link, right now.</summary>
internal sealed class PinAccounting
{
    private long _pinned;
    private long _leased;

    public long PinnedBytes => Volatile.Read(ref _pinned);

    public long LeasedBytes => Volatile.Read(ref _leased);

    public void AddPinned(long bytes) => Interlocked.Add(ref _pinned, bytes);

    public void AddLeased(long bytes) => Interlocked.Add(ref _leased, bytes);
}
