using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using Vso.MemoryPinning;
using Vso.Transport.Tcp;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// The packet path alone, without the embedding API: the sender's descriptors come from a host that
/// owns one pinned buffer (no pin per call, no Task), the receiver's application reads straight from the
/// connection, and the loop is written out (no closure). One operation queues one 256 KiB descriptor and
/// runs both stacks until it is acknowledged; figures are per full-sized data segment and include segment
/// build (descriptor walk, identify, headers, checksum), the simulated wire, parse, reassembly, ACK
/// generation and ACK processing with release. Steady state allocates nothing per segment.
/// </summary>
[MemoryDiagnoser]
public class EngineSegmentBenchmarks
{
    private TransferHarness _harness = null!;
    private BufferHost _host = null!;
    private TcpConnection _sender = null!;
    private TcpConnection _receiver = null!;
    private readonly byte[] _sink = new byte[1 << 20];

    [Params(IdentifyMode.Pinned, IdentifyMode.Copy)]
    public IdentifyMode Mode { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _harness = new TransferHarness(Mode, SegmentBenchmarks.ChunkKiB * 1024, drain: false);
        _sender = _harness.ClientConnection.Tcp!;
        _receiver = _harness.ServerConnection.Tcp!;
        _host = new BufferHost(SegmentBenchmarks.ChunkKiB * 1024);
        _sender.SetHost(_host);
        for (var i = 0; i < 200; i++)
        {
            Segment();
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _harness.Dispose();

    [Benchmark(OperationsPerInvoke = SegmentBenchmarks.SegmentsPerChunk, Description = "per data segment, engine only")]
    public void Segment()
    {
        var acknowledged = _host.AcknowledgedCount;
        _sender.Enqueue(_host.Address, _host.Length, 0, 0);
        var client = _harness.Client.Core;
        var server = _harness.Server.Core;
        var clock = _harness.Clock;
        while (_host.AcknowledgedCount == acknowledged)
        {
            bool progress;
            do
            {
                progress = client.Poll();
                progress |= server.Poll();
                while (_receiver.ReadableBytes > 0)
                {
                    _receiver.Read(_sink);
                    progress = true;
                }
            }
            while (progress);

            if (_host.AcknowledgedCount != acknowledged)
            {
                break;
            }

            var next = Math.Min(client.NextEventMicroseconds, server.NextEventMicroseconds);
            if (next == long.MaxValue)
            {
                throw new InvalidOperationException("Nothing left to happen but the descriptor is not acknowledged.");
            }

            clock.AdvanceTo(Math.Max(next, clock.NowMicroseconds + 1));
        }
    }

    /// <summary>A host that owns one pinned buffer and hands it out again and again.</summary>
    private sealed unsafe class BufferHost : ISendHost, IPinLeaseOwner
    {
        private readonly byte[] _buffer;

        public BufferHost(int length)
        {
            _buffer = GC.AllocateArray<byte>(length, pinned: true);
            new Random(7).NextBytes(_buffer);
            Address = (nint)Unsafe.AsPointer(ref _buffer[0]);
        }

        public nint Address { get; }

        public int Length => _buffer.Length;

        public long AcknowledgedCount { get; private set; }

        public void CopyTo(SendDescriptor descriptor, int offset, Span<byte> destination) =>
            _buffer.AsSpan((int)(descriptor.Address - Address) + offset, destination.Length).CopyTo(destination);

        public PinLease Lease(SendDescriptor descriptor, int offset, int length) => new(this, descriptor.Address + offset, length, 0);

        public void EndLease(nint address, int length, long token)
        {
        }

        public void Acknowledged(SendDescriptor descriptor) => AcknowledgedCount++;

        public void Failed(SendDescriptor descriptor, Exception error) => throw error;
    }
}
