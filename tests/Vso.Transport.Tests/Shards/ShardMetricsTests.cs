using System.Diagnostics.Metrics;
using Vso.Transport.Api;
using Vso.Transport.Engine;
using Vso.Transport.Links;

namespace Vso.Transport.Tests.Shards;

/// <summary>
/// Every engine registers its observed instruments under the same names on the stack's one meter; the vso.engine tag
/// keeps their series apart, so an exporter does not let one engine's value overwrite the other's.
/// </summary>
public sealed class ShardMetricsTests
{
    [Fact]
    public void Each_engine_reports_its_own_memory_series()
    {
        var clock = new VirtualClock();
        var (_, b) = SimulatedLink.CreateMultiQueuePair(clock, new SimulatedLinkOptions { PropagationDelay = TimeSpan.Zero }, 1, 2);
        using var stack = new VsoStack((i, _) => b[i], 2, new VsoStackOptions { Address = System.Net.IPAddress.Parse("198.18.0.2"), PrefixLength = 24 }, clock);
        var engines = new List<object?>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "vso.tcp.memory.held" && instrument.Meter == stack.Meter)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "vso.engine")
                {
                    engines.Add(tag.Value);
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal([0, 1], engines.Cast<int>().Order());
    }
}
