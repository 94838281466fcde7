namespace Vso.MemoryPinning;

/// <summary>
/// Ends a lease that an owner of pinned memory granted on a range of it. Implemented by the owner
/// (a send host, a block pool) so that a lease is a plain struct and costs no allocation.
/// </summary>
internal interface IPinLeaseOwner
{
    void EndLease(nint address, int length, long token);
}

/// <summary>
/// The right to read <see cref="Length"/> bytes at <see cref="Address"/> until disposed: the owner keeps
/// the memory pinned and alive for at least that long. Dispose exactly once.
/// </summary>
public readonly struct PinLease : IDisposable, IEquatable<PinLease>
{
    private readonly IPinLeaseOwner? _owner;
    private readonly long _token;

    internal PinLease(IPinLeaseOwner owner, nint address, int length, long token)
    {
        _owner = owner;
        Address = address;
        Length = length;
        _token = token;
    }

    public nint Address { get; }

    public int Length { get; }

    public bool IsActive => _owner is not null;

    public void Dispose() => _owner?.EndLease(Address, Length, _token);

    public bool Equals(PinLease other) => ReferenceEquals(_owner, other._owner) && Address == other.Address && Length == other.Length && _token == other._token;

    public override bool Equals(object? obj) => obj is PinLease other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Address, Length, _token);

    public static bool operator ==(PinLease left, PinLease right) => left.Equals(right);

    public static bool operator !=(PinLease left, PinLease right) => !left.Equals(right);
}
