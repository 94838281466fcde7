using System.Diagnostics.Metrics;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The Kestrel transport's instruments, on a meter named as the stack's ("Vso.Transport"), so that one
/// <c>dotnet-counters monitor --counters Vso.Transport</c> shows both. One per transport factory.
/// </summary>
internal sealed class VsoTransportMetrics : IDisposable
{
    public VsoTransportMetrics()
    {
        Meter = new Meter("Vso.Transport");
        ProxyHeadersAccepted = Meter.CreateCounter<long>("vso.kestrel.proxy_protocol.accepted", "{connection}", "Connections whose PROXY protocol header was accepted.");
        ProxyHeadersRejected = Meter.CreateCounter<long>("vso.kestrel.proxy_protocol.rejected", "{connection}", "Connections reset for a missing, malformed, oversized, truncated or late PROXY header, or from an untrusted address (tag reason).");
        ConnectionsDrained = Meter.CreateCounter<long>("vso.kestrel.drain.drained", "{connection}", "Connections open when a listener stopped that then finished by themselves (Vso:DrainTimeout).");
        ConnectionsReset = Meter.CreateCounter<long>("vso.kestrel.drain.reset", "{connection}", "Connections open when a listener stopped that were reset: at Vso:DrainTimeout, by Kestrel's shutdown timeout, or never accepted.");
    }

    public Meter Meter { get; }

    public Counter<long> ConnectionsDrained { get; }

    public Counter<long> ConnectionsReset { get; }

    public Counter<long> ProxyHeadersAccepted { get; }

    public Counter<long> ProxyHeadersRejected { get; }

    public void Rejected(ProxyRejection reason) =>
        ProxyHeadersRejected.Add(1, new KeyValuePair<string, object?>("reason", ReasonName(reason)));

    public void Dispose() => Meter.Dispose();

    /// <summary>Tag values without allocation.</summary>
    public static string ReasonName(ProxyRejection reason) => reason switch
    {
        ProxyRejection.Missing => "missing",
        ProxyRejection.Malformed => "malformed",
        ProxyRejection.Oversized => "oversized",
        ProxyRejection.Truncated => "truncated",
        ProxyRejection.Timeout => "timeout",
        ProxyRejection.Untrusted => "untrusted",
        _ => "none",
    };
}
