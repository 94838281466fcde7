using BenchmarkDotNet.Attributes;
using Vso.MemoryPinning;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// One pin lease taken and ended, as the link does per gathered piece of a frame: on a block of the
/// <see cref="PinnedBlockPool"/> (the Kestrel host) and on a <see cref="ForeignMemoryPinner"/> pin (the embedding API's
/// SendAsync). Single-threaded: the cost without contention.
/// </summary>
[MemoryDiagnoser]
public class PinLeaseBenchmarks
{
    private PinnedBlockPool _pool = null!;
    private PinnedBlock _block = null!;
    private ForeignMemoryPinner _pinner = null!;
    private ForeignPin _pin = null!;

    [GlobalSetup]
    public void Setup()
    {
        _pool = new PinnedBlockPool();
        _block = _pool.Rent();
        _pinner = new ForeignMemoryPinner();
        _pin = _pinner.Pin(new byte[64 * 1024]);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pin.Dispose();
        _block.Dispose();
        _pool.Dispose();
    }

    [Benchmark(Description = "PinnedBlockPool: lease + end")]
    public nint PoolLease()
    {
        var lease = _pool.Lease(_block.Id, _block.Generation, _block.Address + 100, 1448);
        var address = lease.Address;
        lease.Dispose();
        return address;
    }

    [Benchmark(Description = "ForeignMemoryPinner: lease + end")]
    public nint ForeignLease()
    {
        var lease = _pin.Lease(100, 1448);
        var address = lease.Address;
        lease.Dispose();
        return address;
    }
}
