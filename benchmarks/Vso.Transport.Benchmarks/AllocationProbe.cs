using System.Diagnostics.Tracing;
using Vso.Transport.Tcp;

namespace Vso.Transport.Benchmarks;

/// <summary>
/// `--probe`: steady-state bytes allocated, split into the SendAsync call, the sender's polls and the
/// receiver's polls, for two chunk sizes so that what is per call and what is per segment separate;
/// plus the types the runtime's allocation sampling (GCAllocationTick, about one event per 100 KB)
/// caught while the transfers ran.
/// </summary>
internal static class AllocationProbe
{
    public static void Run()
    {
        foreach (var framesPerTurn in new[] { 0, 2, 16 })
        {
            using var h = new TransferHarness(IdentifyMode.Pinned, SegmentBenchmarks.ChunkKiB * 1024, receiverFramesPerTurn: framesPerTurn);
            h.WarmUp();
            Console.WriteLine($"receiver frames per turn {(framesPerTurn == 0 ? "unlimited" : framesPerTurn)}: ACKs per {SegmentBenchmarks.ChunkKiB} KiB chunk {AckBenchmarks.AcksPerChunk(h)}, {AckBenchmarks.AcksPerChunk(h)}, {AckBenchmarks.AcksPerChunk(h)}");
        }

        foreach (var (mode, ackEvery, framesPerTurn) in new[] { (IdentifyMode.Pinned, 2, 0), (IdentifyMode.Copy, 2, 0), (IdentifyMode.Pinned, 1, 0), (IdentifyMode.Pinned, 2, 2) })
        {
            foreach (var chunkKiB in new[] { 64, 1024 })
            {
                using var harness = new TransferHarness(mode, chunkKiB * 1024, ackEvery, framesPerTurn);
                harness.WarmUp();
                var chunks = (256 * 1024) / chunkKiB; // 256 MiB per run
                var infoBefore = harness.ClientConnection.GetInfo();
                var serverBefore = harness.ServerConnection.GetInfo();
                using var listener = new AllocationListener();
                long send = 0, client = 0, server = 0;
                for (var i = 0; i < chunks; i++)
                {
                    var (s, c, r) = harness.TransferCountingAllocations();
                    send += s;
                    client += c;
                    server += r;
                }

                var infoAfter = harness.ClientConnection.GetInfo();
                var segments = infoAfter.SegmentsSent - infoBefore.SegmentsSent;
                var acks = infoAfter.SegmentsReceived - infoBefore.SegmentsReceived;
                var serverSent = harness.ServerConnection.GetInfo().SegmentsSent - serverBefore.SegmentsSent;
                Console.WriteLine($"{mode}, DelayedAckSegments={ackEvery}, receiver frames per turn {(framesPerTurn == 0 ? "unlimited" : framesPerTurn)}, {chunkKiB} KiB per SendAsync: {chunks} sends, {segments} data segments, {acks} ACKs received ({serverSent} sent by the receiver; {(double)segments / acks:F1} segments per ACK), {infoAfter.RetransmittedSegments - infoBefore.RetransmittedSegments} retransmitted");
                Console.WriteLine($"  per SendAsync: call {(double)send / chunks:F1} B, sender polls {(double)client / chunks:F1} B, receiver polls {(double)server / chunks:F1} B; per data segment: {(double)(send + client + server) / segments:F3} B");
                foreach (var (type, bytes) in listener.Types.OrderByDescending(t => t.Value))
                {
                    Console.WriteLine($"  sampled: {type} ~{bytes:N0} B");
                }
            }
        }
    }

    internal sealed class AllocationListener : EventListener
    {
        private readonly Lock _gate = new();

        public Dictionary<string, long> Types { get; } = [];

        /// <summary>Sampled bytes by type and the OS thread that allocated them.</summary>
        private readonly Dictionary<(long Thread, string Type), long> _byThread = [];

        /// <summary>The sampled types, leaving out what <paramref name="osThreadId"/> allocated.</summary>
        public Dictionary<string, long> TypesOutside(long osThreadId)
        {
            var types = new Dictionary<string, long>();
            lock (_gate)
            {
                foreach (var ((thread, type), bytes) in _byThread)
                {
                    if (thread != osThreadId)
                    {
                        types[type] = types.GetValueOrDefault(type) + bytes;
                    }
                }
            }

            return types;
        }

        protected override void OnEventSourceCreated(EventSource eventSource)
        {
            if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
            {
                EnableEvents(eventSource, EventLevel.Verbose, (EventKeywords)0x1); // GC keyword: GCAllocationTick
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            if (eventData.EventName?.StartsWith("GCAllocationTick", StringComparison.Ordinal) != true || eventData.Payload is null)
            {
                return;
            }

            var index = eventData.PayloadNames!.IndexOf("TypeName");
            var amountIndex = eventData.PayloadNames.IndexOf("AllocationAmount64");
            var type = index >= 0 ? eventData.Payload[index]?.ToString() ?? "?" : "?";
            var amount = amountIndex >= 0 ? Convert.ToInt64(eventData.Payload[amountIndex]) : 0;
            lock (_gate)
            {
                Types[type] = Types.GetValueOrDefault(type) + amount;
                _byThread[(eventData.OSThreadId, type)] = _byThread.GetValueOrDefault((eventData.OSThreadId, type)) + amount;
            }
        }
    }
}
