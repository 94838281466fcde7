using BenchmarkDotNet.Attributes;
using Vso.Transport.Wire;

namespace Vso.Transport.Benchmarks;

/// <summary>The RFC 1071 internet checksum over a minimal segment, a full Ethernet MSS and a jumbo frame.</summary>
[MemoryDiagnoser]
public class ChecksumBenchmarks
{
    private byte[] _data = [];

    [Params(64, 1460, 9000)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Bytes];
        new Random(42).NextBytes(_data);
    }

    [Benchmark(Baseline = true, Description = "InternetChecksum.Compute")]
    public ushort Compute() => InternetChecksum.Compute(_data);

    /// <summary>The way segments are checksummed: the payload in two pieces (odd split), then folded.</summary>
    [Benchmark(Description = "ChecksumAccumulator, 2 pieces")]
    public ushort Accumulator()
    {
        var sum = default(ChecksumAccumulator);
        var split = (_data.Length / 3) | 1;
        sum.Add(_data.AsSpan(0, split));
        sum.Add(_data.AsSpan(split));
        return sum.Finish();
    }
}
