using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Vso.Samples.HelloServer;

/// <summary>Where the sample sends its metrics (configuration key <c>Metrics</c>).</summary>
internal enum MetricsExport
{
    /// <summary>No exporter; the meters can still be read with dotnet-counters.</summary>
    None,

    /// <summary>OpenTelemetry's Prometheus exporter, scraped at /metrics on every endpoint.</summary>
    Prometheus,

    /// <summary>OpenTelemetry's OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT, http://localhost:4317 by default).</summary>
    Otlp,
}

/// <summary>
/// The stack's meters and Kestrel's exported together through OpenTelemetry. Shared as source with the test that
/// scrapes /metrics during a transfer, so that what it checks is what the sample does.
/// </summary>
internal static class SampleMetrics
{
    /// <summary>The stack's meters (TCP, wire drops, engine; pinned memory) and ASP.NET Core's (connections, requests).</summary>
    public static readonly string[] Meters =
    [
        "Vso.Transport",
        "Vso.MemoryPinning",
        "Microsoft.AspNetCore.Server.Kestrel",
        "Microsoft.AspNetCore.Hosting",
    ];

    /// <summary>Parses the <c>Metrics</c> value by name only (None, Prometheus or Otlp; empty for None).</summary>
    public static bool TryParse(string? text, out MetricsExport export)
    {
        export = MetricsExport.None;
        if (string.IsNullOrWhiteSpace(text))
        {
            return true;
        }

        foreach (var value in Enum.GetValues<MetricsExport>())
        {
            if (string.Equals(value.ToString(), text.Trim(), StringComparison.OrdinalIgnoreCase))
            {
                export = value;
                return true;
            }
        }

        return false;
    }

    public static void Add(IServiceCollection services, MetricsExport export)
    {
        if (export == MetricsExport.None)
        {
            return;
        }

        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("Vso.Samples.HelloServer"))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(Meters);
                if (export == MetricsExport.Prometheus)
                {
                    metrics.AddPrometheusExporter();
                }
                else
                {
                    metrics.AddOtlpExporter();
                }
            });
    }

    /// <summary>
    /// The process's pinned bytes as an exporter reads them: one observation of <c>vso.pinning.pinned_bytes</c> on the
    /// Vso.MemoryPinning meter; 0 when no pinned memory was ever made (the meter is created with the first pool), as
    /// with Transport=Sockets.
    /// </summary>
    public static long PinnedBytes()
    {
        long pinned = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = static (instrument, l) =>
        {
            if (instrument.Meter.Name == "Vso.MemoryPinning" && instrument.Name == "vso.pinning.pinned_bytes")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => pinned = value);
        listener.Start();
        listener.RecordObservableInstruments();
        return pinned;
    }

    public static void Map(WebApplication app, MetricsExport export)
    {
        if (export == MetricsExport.Prometheus)
        {
            app.MapPrometheusScrapingEndpoint();
        }
    }
}
