using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// Vso:DrainTimeout and Vso:DrainNewConnections with Kestrel over the simulated wire: StopAsync stops new connections at
/// once (RST, or no answer), lets a request in progress finish and counts it drained, resets what outlasts the drain
/// and counts it reset.
/// </summary>
public sealed class DrainTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly IPEndPoint Endpoint = new(IPAddress.Parse(SimulatedPair.ServerAddress), 8080);

    [Fact]
    public async Task StopAsync_refuses_new_connections_and_lets_a_request_in_progress_finish()
    {
        using var pair = SimulatedPair.Create();
        using var counters = new DrainCounters(pair);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var app = await StartAsync(pair, async context =>
        {
            started.TrySetResult();
            await gate.Task;
            await context.Response.WriteAsync("finished");
        });

        var client = await pair.Client.ConnectAsync(Endpoint).WaitAsync(Timeout);
        await client.SendAsync(Encoding.ASCII.GetBytes("GET /work HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
        await started.Task.WaitAsync(Timeout);

        var stop = app.StopAsync();
        await SimulatedPair.WaitUntil(() => counters.Started, "the drain to start");
        var refused = await Assert.ThrowsAsync<TcpConnectionException>(() => pair.Client.ConnectAsync(Endpoint).WaitAsync(Timeout));
        Assert.Equal(TcpError.Refused, refused.Error);
        Assert.False(stop.IsCompleted, "StopAsync finished while a request was in progress");

        gate.SetResult();
        var response = await ReadToEndAsync(client).WaitAsync(Timeout);
        Assert.StartsWith("HTTP/1.1 200", response, StringComparison.Ordinal);
        Assert.Contains("Connection: close", response, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("finished", response, StringComparison.Ordinal);
        await stop.WaitAsync(Timeout);
        await SimulatedPair.WaitUntil(() => counters.Drained == 1, "the connection to be counted drained");
        Assert.Equal(0, counters.Reset);
    }

    [Fact]
    public async Task A_request_that_outlasts_DrainTimeout_is_reset_and_counted()
    {
        var options = SimulatedPair.DefaultOptions();
        options.DrainTimeout = TimeSpan.FromMilliseconds(300);
        using var pair = SimulatedPair.Create(options);
        using var counters = new DrainCounters(pair);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var app = await StartAsync(pair, async context =>
        {
            started.TrySetResult();
            await Task.Delay(System.Threading.Timeout.Infinite, context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
        });

        // An idle keep-alive connection beside the hanging request: Kestrel closes it at once, it is drained.
        var idle = await pair.Client.ConnectAsync(Endpoint).WaitAsync(Timeout);
        var client = await pair.Client.ConnectAsync(Endpoint).WaitAsync(Timeout);
        await client.SendAsync(Encoding.ASCII.GetBytes("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
        await started.Task.WaitAsync(Timeout);

        var stopping = DateTime.UtcNow;
        var stop = app.StopAsync();
        var error = await Assert.ThrowsAsync<TcpConnectionException>(() => client.ReceiveAsync(new byte[64]).AsTask().WaitAsync(Timeout));
        Assert.Equal(TcpError.Reset, error.Error);
        Assert.True(DateTime.UtcNow - stopping >= TimeSpan.FromMilliseconds(250), $"reset after {(DateTime.UtcNow - stopping).TotalMilliseconds} ms, before Vso:DrainTimeout");
        Assert.Equal(0, await idle.ReceiveAsync(new byte[64]).AsTask().WaitAsync(Timeout));
        await stop.WaitAsync(Timeout);
        await SimulatedPair.WaitUntil(() => counters.Reset == 1 && counters.Drained == 1, $"one reset and one drained (now {counters.Reset} and {counters.Drained})");
    }

    /// <summary>With Drop, a stopped listener keeps its port silent: the SYN goes unanswered (a balancer retries elsewhere) until the listener is disposed.</summary>
    [Fact]
    public async Task With_DrainNewConnections_Drop_a_new_SYN_gets_no_answer_until_the_listener_is_disposed()
    {
        var options = SimulatedPair.DefaultOptions();
        options.DrainNewConnections = VsoDrainNewConnections.Drop;
        using var pair = SimulatedPair.Create(options);
        var listener = await pair.Factory.BindAsync(Endpoint);
        await listener.UnbindAsync();

        var connect = pair.Client.ConnectAsync(Endpoint);
        await Task.Delay(500);
        Assert.False(connect.IsCompleted, "a SYN to a silenced listener was answered");

        // Disposed: the client's retransmitted SYN (initial RTO 1 s) meets a closed port.
        await listener.DisposeAsync();
        var refused = await Assert.ThrowsAsync<TcpConnectionException>(() => connect.WaitAsync(Timeout));
        Assert.Equal(TcpError.Refused, refused.Error);
    }

    private static async Task<WebApplication> StartAsync(SimulatedPair pair, RequestDelegate handler)
    {
        var builder = WebApplication.CreateBuilder();
        builder.Services.AddSingleton<IConnectionListenerFactory>(pair.Factory);
        builder.WebHost.UseUrls($"http://{SimulatedPair.ServerAddress}:8080");
        var app = builder.Build();
        app.Run(handler);
        await app.StartAsync();
        return app;
    }

    private static async Task<string> ReadToEndAsync(VsoConnection connection)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        int n;
        while ((n = await connection.ReceiveAsync(buffer)) > 0)
        {
            text.Append(Encoding.ASCII.GetString(buffer, 0, n));
        }

        return text.ToString();
    }

    /// <summary>The drain counters of this pair's transport only.</summary>
    private sealed class DrainCounters : IDisposable
    {
        private readonly MeterListener _listener = new();
        private long _drained;
        private long _reset;

        public DrainCounters(SimulatedPair pair)
        {
            var meter = pair.Factory.Metrics.Meter;
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter == meter && instrument.Name.StartsWith("vso.kestrel.drain.", StringComparison.Ordinal))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
            {
                if (instrument.Name.EndsWith(".drained", StringComparison.Ordinal))
                {
                    Interlocked.Add(ref _drained, value);
                }
                else
                {
                    Interlocked.Add(ref _reset, value);
                }
            });
            _listener.Start();
            Pair = pair;
        }

        private SimulatedPair Pair { get; }

        public long Drained => Interlocked.Read(ref _drained);

        public long Reset => Interlocked.Read(ref _reset);

        /// <summary>The transport's listener is unbound: where the drain starts.</summary>
        public bool Started => Pair.Factory.ListenerCount == 0;

        public void Dispose() => _listener.Dispose();
    }
}
