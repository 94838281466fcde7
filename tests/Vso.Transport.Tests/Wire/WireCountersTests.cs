using System.Diagnostics.Metrics;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Wire;

public sealed class WireCountersTests
{
    [Fact]
    public void Drops_are_counted_per_layer_and_reason()
    {
        var counters = new WireCounters();
        counters.Drop(WireLayer.Tcp, WireStatus.BadChecksum);
        counters.Drop(WireLayer.Tcp, WireStatus.BadChecksum);
        counters.Drop(WireLayer.Ipv4, WireStatus.Fragment);

        Assert.Equal(2, counters.Dropped(WireLayer.Tcp, WireStatus.BadChecksum));
        Assert.Equal(1, counters.Dropped(WireLayer.Ipv4, WireStatus.Fragment));
        Assert.Equal(0, counters.Dropped(WireLayer.Ipv4, WireStatus.BadChecksum));
        Assert.Equal(3, counters.TotalDropped);
        Assert.Throws<ArgumentOutOfRangeException>(() => counters.Drop((WireLayer)WireLayerInfo.Count, WireStatus.Ok));
        Assert.Throws<ArgumentOutOfRangeException>(() => counters.Drop(WireLayer.Tcp, (WireStatus)WireStatusInfo.Count));
    }

    [Fact]
    public void Status_and_layer_counts_match_the_enums()
    {
        Assert.Equal(WireStatusInfo.Count, Enum.GetValues<WireStatus>().Length);
        Assert.Equal(WireLayerInfo.Count, Enum.GetValues<WireLayer>().Length);
    }

    [Fact]
    public void Observable_counter_reports_non_zero_series_with_layer_and_reason_tags()
    {
        using var meter = new Meter("Vso.Transport.Tests.Wire." + Guid.NewGuid().ToString("N"));
        var counters = new WireCounters(meter);
        counters.Drop(WireLayer.Tcp, WireStatus.BadOption);
        counters.Drop(WireLayer.Tcp, WireStatus.BadOption);
        counters.Drop(WireLayer.Arp, WireStatus.Unsupported);

        var seen = new List<(long Value, string? Layer, string? Reason)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == meter && instrument.Name == "vso.wire.dropped")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            string? layer = null, reason = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "layer")
                {
                    layer = tag.Value as string;
                }
                else if (tag.Key == "reason")
                {
                    reason = tag.Value as string;
                }
            }

            seen.Add((value, layer, reason));
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(2, seen.Count);
        Assert.Contains((2L, "tcp", "BadOption"), seen);
        Assert.Contains((1L, "arp", "Unsupported"), seen);
    }

    [Fact]
    public void Martian_drops_are_exported_by_reason()
    {
        using var meter = new Meter("Vso.Transport.Tests.Martians." + Guid.NewGuid().ToString("N"));
        var counters = new Vso.Transport.Interface.MartianCounters(meter);
        counters.Drop(Vso.Transport.Interface.MartianReason.NoRoute);
        counters.Drop(Vso.Transport.Interface.MartianReason.NoRoute);
        counters.Drop(Vso.Transport.Interface.MartianReason.Land);

        var seen = new List<(long Value, string? Reason)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == meter && instrument.Name == "vso.ip.martians_dropped")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            string? reason = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "reason")
                {
                    reason = tag.Value as string;
                }
            }

            seen.Add((value, reason));
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(2, seen.Count);
        Assert.Contains((2L, "NoRoute"), seen);
        Assert.Contains((1L, "Land"), seen);
    }
}
