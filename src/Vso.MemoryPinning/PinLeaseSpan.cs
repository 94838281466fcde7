namespace Vso.MemoryPinning;

/// <summary>Reading leased memory: the lease is what makes the address safe to read.</summary>
internal static class PinLeaseExtensions
{
    /// <summary>The leased bytes, readable until the lease is disposed.</summary>
    public static unsafe ReadOnlySpan<byte> AsSpan(this in PinLease lease) => new((void*)lease.Address, lease.Length);
}
