using BenchmarkDotNet.Attributes;
using Vso.Transport.Tcp;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// (b) Segment build: one full data segment through the real stack path, in Pinned and Copy mode.
/// One operation sends <see cref="ChunkKiB"/> KiB with SendAsync and runs the virtual-time driver until
/// it is acknowledged; the figures are per full-sized data segment (OperationsPerInvoke), and include
/// everything that segment costs both stacks: descriptor walk, identify (lease or copy), headers and
/// checksum, the simulated wire's copy, parse and checksum check at the receiver, reassembly, the
/// receiver's read, and the sender's share of ACK processing and release.
/// </summary>
[MemoryDiagnoser]
public class SegmentBenchmarks
{
    public const int ChunkKiB = 256;

    // 256 KiB / 1448-byte payload (MSS 1460 less 12 bytes of timestamps) = 181.04 -> 182 segments.
    public const int SegmentsPerChunk = ((ChunkKiB * 1024) + 1447) / 1448;

    private TransferHarness _harness = null!;

    [Params(IdentifyMode.Pinned, IdentifyMode.Copy)]
    public IdentifyMode Mode { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _harness = new TransferHarness(Mode, ChunkKiB * 1024);
        if (_harness.SegmentsPerChunk != SegmentsPerChunk)
        {
            throw new InvalidOperationException($"Expected {SegmentsPerChunk} segments per chunk, the connection gives {_harness.SegmentsPerChunk}.");
        }

        _harness.WarmUp();
    }

    [GlobalCleanup]
    public void Cleanup() => _harness.Dispose();

    [Benchmark(OperationsPerInvoke = SegmentsPerChunk, Description = "per data segment, send to ACK")]
    public void Segment() => _harness.Transfer();
}

/// <summary>
/// (c) ACK processing in steady state: the same 256 KiB transfer (Pinned), but the receiver's link hands it
/// at most 2 frames per turn of its loop, so it acknowledges every second segment (92 ACKs per chunk), or
/// at most 16 (14 ACKs per chunk: stretch ACKs). Figures are per ACK the sender received
/// (OperationsPerInvoke = ACKs per chunk, checked in setup), so each still carries its share of the data
/// segments; the marginal cost of one ACK (a receiver turn that emits it, the wire, the sender's
/// processing and release) is the difference of the per-chunk times over the difference of the ACK
/// counts: see benchmarks/README.md.
/// </summary>
[MemoryDiagnoser]
public class AckBenchmarks
{
    public const int AcksEvery2 = 92;
    public const int AcksEvery16 = 14;
    private TransferHarness _harness = null!;

    [GlobalSetup(Target = nameof(AckEvery2Segments))]
    public void SetupEvery2() => Setup(2, AcksEvery2);

    [GlobalSetup(Target = nameof(AckEvery16Segments))]
    public void SetupEvery16() => Setup(16, AcksEvery16);

    [GlobalCleanup]
    public void Cleanup() => _harness.Dispose();

    [Benchmark(OperationsPerInvoke = AcksEvery2, Description = "per ACK, receiver takes 2 frames per turn")]
    public void AckEvery2Segments() => _harness.Transfer();

    [Benchmark(OperationsPerInvoke = AcksEvery16, Description = "per ACK, receiver takes 16 frames per turn")]
    public void AckEvery16Segments() => _harness.Transfer();

    private void Setup(int framesPerTurn, int expectedAcks)
    {
        _harness = new TransferHarness(IdentifyMode.Pinned, SegmentBenchmarks.ChunkKiB * 1024, receiverFramesPerTurn: framesPerTurn);
        _harness.WarmUp();
        var acks = AcksPerChunk(_harness);
        if (acks != expectedAcks)
        {
            throw new InvalidOperationException($"Expected {expectedAcks} ACKs per chunk with {framesPerTurn} frames per turn, measured {acks}.");
        }
    }

    internal static long AcksPerChunk(TransferHarness harness)
    {
        var before = harness.ClientConnection.GetInfo().SegmentsReceived;
        harness.Transfer();
        return harness.ClientConnection.GetInfo().SegmentsReceived - before;
    }
}
