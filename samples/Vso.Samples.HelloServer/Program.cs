// Hello server: the same ASP.NET Core app on the Vso transport (Transport=Vso, default) or on Kestrel's Sockets
// transport (Transport=Sockets). See the README's "Kestrel transport" section.
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Vso.Samples.HelloServer;
using Vso.Transport.Kestrel;
using Vso.Transport.Links;

var builder = WebApplication.CreateBuilder(args);
var transport = builder.Configuration["Transport"] ?? "Vso";
var useVso = transport.Equals("Vso", StringComparison.OrdinalIgnoreCase);
if (!useVso && !transport.Equals("Sockets", StringComparison.OrdinalIgnoreCase))
{
    Console.Error.WriteLine($"Transport = '{transport}' is invalid: use Vso or Sockets.");
    return 2;
}

if (!SampleMetrics.TryParse(builder.Configuration["Metrics"], out var metrics))
{
    Console.Error.WriteLine($"Metrics = '{builder.Configuration["Metrics"]}' is invalid: use None, Prometheus or Otlp.");
    return 1;
}

if (useVso)
{
    builder.WebHost.UseVsoTransport();
}

// Metrics=Prometheus (scraped at /metrics) or Otlp: the stack's meters and Kestrel's through OpenTelemetry.
SampleMetrics.Add(builder.Services, metrics);

// Kestrel's limits from configuration, which Kestrel itself does not bind (only its endpoints): for example
// Kestrel__Limits__RequestHeadersTimeout=00:00:10, as the attack interop tests set it on both transports.
builder.WebHost.ConfigureKestrel((context, kestrel) => context.Configuration.GetSection("Kestrel:Limits").Bind(kestrel.Limits));

// Optional extra endpoints: HTTPS with a self-signed certificate made at start (HttpsUrl=https://198.18.0.2:8443)
// and HTTP/2 over cleartext with prior knowledge (H2cUrl=http://198.18.0.2:8081; Kestrel serves h2c only on an
// endpoint limited to HTTP/2). When either is set, the Urls are listened to explicitly next to them.
var httpsUrl = builder.Configuration["HttpsUrl"];
var h2cUrl = builder.Configuration["H2cUrl"];
if (!string.IsNullOrWhiteSpace(httpsUrl) || !string.IsNullOrWhiteSpace(h2cUrl))
{
    var urls = (builder.Configuration["Urls"] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries);
    X509Certificate2? pfx = null;
    if (!string.IsNullOrWhiteSpace(httpsUrl))
    {
        using var cert = SelfSigned();
        pfx = X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx), null);
    }

    builder.WebHost.ConfigureKestrel(kestrel =>
    {
        foreach (var url in urls)
        {
            var uri = new Uri(url);
            kestrel.Listen(IPAddress.Parse(uri.Host), uri.Port);
        }

        if (pfx is not null)
        {
            var https = new Uri(httpsUrl!);
            kestrel.Listen(IPAddress.Parse(https.Host), https.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(pfx);
            });
        }

        if (!string.IsNullOrWhiteSpace(h2cUrl))
        {
            var h2c = new Uri(h2cUrl);
            kestrel.Listen(IPAddress.Parse(h2c.Host), h2c.Port, listen => listen.Protocols = HttpProtocols.Http2);
        }
    });
}

var app = builder.Build();

// Configuration is checked before anything needs privileges (the TAP device, the AF_PACKET socket come up at the
// first bind): a bad value ends the process with its message as the last line and exit code 1.
if (useVso)
{
    try
    {
        _ = app.Services.GetRequiredService<IOptions<VsoTransportOptions>>().Value;
    }
    catch (OptionsValidationException ex)
    {
        foreach (var failure in ex.Failures)
        {
            Console.Error.WriteLine(failure);
        }

        return 1;
    }
}

SampleMetrics.Map(app, metrics);
app.MapGet("/", () => Results.Text("Hello, World!", "text/plain"));

app.MapGet("/bytes/{n:long}", async (long n, HttpContext context) =>
{
    if (n < 0)
    {
        return Results.BadRequest("n must be non-negative");
    }

    context.Response.ContentType = "application/octet-stream";
    context.Response.ContentLength = n;
    var writer = context.Response.BodyWriter;
    long i = 0;
    while (i < n)
    {
        var span = writer.GetSpan(4096);
        var count = (int)Math.Min(Math.Min(span.Length, Pattern.Chunk), n - i);

        // Copied from a precomputed run of the pattern: a per-byte modulo loop cost ~1.3 ms of CPU per MB, as much as a
        // transport's whole send path, and hid the transports' difference (benchmarks/README.md, "What bounds throughput").
        Pattern.Bytes.AsSpan((int)(i % 251), count).CopyTo(span);

        writer.Advance(count);
        i += count;
        if (writer.UnflushedBytes >= 64 * 1024 || i == n)
        {
            var result = await writer.FlushAsync(context.RequestAborted);
            if (result.IsCompleted || result.IsCanceled)
            {
                break;
            }
        }
    }

    return Results.Empty;
});

app.MapPost("/echo", async (HttpContext context) =>
{
    context.Response.ContentType = context.Request.ContentType ?? "application/octet-stream";
    if (context.Request.ContentLength is { } length)
    {
        context.Response.ContentLength = length;
    }

    await context.Request.BodyReader.CopyToAsync(context.Response.BodyWriter, context.RequestAborted);
});

app.MapGet("/tcpinfo", (HttpContext context) =>
{
    var feature = context.Features.Get<IVsoTcpInfoFeature>();
    if (feature is null)
    {
        return Results.Text("{\"transport\":\"Sockets\",\"tcpinfo\":null}", "application/json");
    }

    var info = feature.GetInfo();
    return Results.Text(JsonSerializer.Serialize(new
    {
        transport = "Vso",
        state = info.State.ToString(),
        srttMicroseconds = (long)info.SmoothedRtt.TotalMicroseconds,
        rttvarMicroseconds = (long)info.RttVariance.TotalMicroseconds,
        rtoMicroseconds = (long)info.Rto.TotalMicroseconds,
        cwnd = info.CongestionWindow,
        ssthresh = info.SlowStartThreshold,
        mss = info.MaxSegmentSize,
        bytesInFlight = info.BytesInFlight,
        segmentsSent = info.SegmentsSent,
        offloadedSuperSegments = info.OffloadedSuperSegments,
        segmentsReceived = info.SegmentsReceived,
        retransmittedSegments = info.RetransmittedSegments,
        timeouts = info.Timeouts,
        fastRetransmits = info.FastRetransmits,
        lossRecovery = info.LossRecovery,
        congestionControl = info.CongestionControl,
    }), "application/json");
});

// The client as the connection sees it; behind a balancer that speaks the PROXY protocol (Vso:ProxyProtocol), the one
// its header names, not the balancer.
app.MapGet("/whoami", (HttpContext context) => Results.Text(
    $"{context.Connection.RemoteIpAddress}:{context.Connection.RemotePort} {context.Connection.LocalIpAddress}:{context.Connection.LocalPort}\n", "text/plain"));

app.Lifetime.ApplicationStarted.Register(() =>
{
    foreach (var address in app.Urls)
    {
        Console.WriteLine($"HelloServer ({transport}) listening on {address}");
        Console.WriteLine($"  try: curl {(address.StartsWith("https", StringComparison.Ordinal) ? "-k " : "")}{address.TrimEnd('/')}/");
    }
});

try
{
    await app.RunAsync();
}
catch (IOException ex)
{
    // The link opens at the first bind (privileges, a missing interface): its message names the keys to change.
    Console.Error.WriteLine(ex.Message);
    return 1;
}

// RunAsync disposed the host and with it the transport: every pinned block is back (the process-wide figure the
// Vso.MemoryPinning meter publishes).
Console.WriteLine($"HelloServer stopped; pinned bytes: {SampleMetrics.PinnedBytes()}");
return 0;

static X509Certificate2 SelfSigned()
{
    using var key = RSA.Create(2048);
    var request = new CertificateRequest("CN=vso-hello", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
    var san = new SubjectAlternativeNameBuilder();
    san.AddIpAddress(IPAddress.Parse("198.18.0.2"));
    san.AddDnsName("localhost");
    request.CertificateExtensions.Add(san.Build());
    return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
}

/// <summary>Byte i of /bytes/{n} is (byte)(i % 251): any run of up to <see cref="Chunk"/> bytes starts at Bytes[i % 251].</summary>
internal static class Pattern
{
    public const int Chunk = 64 * 1024;

    public static readonly byte[] Bytes = Create();

    private static byte[] Create()
    {
        var bytes = new byte[Chunk + 251];
        for (var k = 0; k < bytes.Length; k++)
        {
            bytes[k] = (byte)(k % 251);
        }

        return bytes;
    }
}
