using System.Diagnostics.Metrics;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Links;

/// <summary>A link's drops reach the meter by reason, per engine, also through a decorator (capture), not only the log.</summary>
public sealed class LinkMetricsTests
{
    [Fact]
    public void Drops_are_observed_by_reason_and_engine_through_a_capturing_decorator()
    {
        var link = new CountingLink { FramesReceived = 10, FramesTransmitted = 20, OversizeReceivedFrames = 3, BadOffloadFrames = 4, OversizeTransmitFrames = 5, TransmitErrors = 6 };
        var path = Path.Combine(Path.GetTempPath(), $"vso-linkmetrics-{Environment.ProcessId}.pcap");
        using (var captured = new CapturingLink(link, path))
        {
            using var meter = new Meter("test.link." + Guid.NewGuid());
            LinkMetrics.Register(meter, ((ILink)captured).Counters!, engine: 3);

            var seen = new Dictionary<string, long>();
            using var listener = new MeterListener();
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == meter)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
            {
                string? reason = null;
                object? engine = null;
                foreach (var tag in tags)
                {
                    if (tag.Key == "reason")
                    {
                        reason = (string?)tag.Value;
                    }
                    else if (tag.Key == "vso.engine")
                    {
                        engine = tag.Value;
                    }
                }

                Assert.Equal(3, engine);
                seen[reason is null ? instrument.Name : $"{instrument.Name}/{reason}"] = value;
            });
            listener.Start();
            listener.RecordObservableInstruments();

            Assert.Equal(10, seen["vso.link.frames_received"]);
            Assert.Equal(20, seen["vso.link.frames_transmitted"]);
            Assert.Equal(3, seen["vso.link.frames_dropped/oversize_received"]);
            Assert.Equal(4, seen["vso.link.frames_dropped/bad_offload"]);
            Assert.Equal(5, seen["vso.link.frames_dropped/oversize_transmit"]);
            Assert.Equal(6, seen["vso.link.frames_dropped/transmit_error"]);
        }

        File.Delete(path);
    }

    private sealed class CountingLink : ILink, ILinkCounters
    {
        public long FramesReceived { get; init; }

        public long FramesTransmitted { get; init; }

        public long OversizeReceivedFrames { get; init; }

        public long BadOffloadFrames { get; init; }

        public long OversizeTransmitFrames { get; init; }

        public long TransmitErrors { get; init; }

        public MacAddress HardwareAddress => default;

        public int Mtu => 1500;

        public long NextEventMicroseconds => long.MaxValue;

        public int Receive(IFrameReceiver receiver, int maxFrames) => 0;

        public void Transmit(TransmitBatch batch)
        {
        }

        public bool WaitForFrames(TimeSpan timeout) => false;

        public void Dispose()
        {
        }
    }
}
