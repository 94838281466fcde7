using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Vso.Transport.Api;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>Kestrel itself over the transport on a simulated wire: HTTP/1.1 keep-alive, graceful stop, pinned bytes back to zero.</summary>
public sealed class KestrelHostTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Kestrel_serves_keep_alive_requests_and_StopAsync_returns_every_pinned_byte()
    {
        using var pair = SimulatedPair.Create();
        var app = BuildApp(pair);
        app.MapGet("/", () => Results.Text("Hello, World!", "text/plain"));
        app.MapGet("/tcpinfo", (HttpContext c) => c.Features.Get<IVsoTcpInfoFeature>()!.GetInfo().State.ToString());
        app.MapGet("/big", (HttpContext c) => c.Response.Body.WriteAsync(new byte[3 << 20]).AsTask());
        await app.StartAsync();

        var client = await pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080)).WaitAsync(Timeout);
        var reader = new ResponseReader(client);
        for (var i = 0; i < 3; i++)
        {
            await client.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
            var (status, body) = await reader.ReadAsync().WaitAsync(Timeout);
            Assert.Equal(200, status);
            Assert.Equal("Hello, World!", Encoding.ASCII.GetString(body));
        }

        await client.SendAsync(Encoding.ASCII.GetBytes("GET /tcpinfo HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
        Assert.Equal("Established", Encoding.ASCII.GetString((await reader.ReadAsync().WaitAsync(Timeout)).Body));

        await client.SendAsync(Encoding.ASCII.GetBytes("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
        Assert.Equal(3 << 20, (await reader.ReadAsync().WaitAsync(Timeout)).Body.Length);

        // Graceful stop with the keep-alive connection still open: Kestrel closes it, the listener unbinds.
        await app.StopAsync().WaitAsync(Timeout);
        await SimulatedPair.WaitUntil(() => pair.Factory.PinnedBytes == 0, "pinned bytes back to zero after StopAsync");
        var refused = await Assert.ThrowsAsync<TcpConnectionException>(() => pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080)).WaitAsync(Timeout));
        Assert.Equal(TcpError.Refused, refused.Error);
        await app.DisposeAsync();
    }

    /// <summary>
    /// Issue 12, no thread hop: with ApplicationOnEngineThread the handler runs on the stack's engine thread (in the turn
    /// the request arrived); without it, on the thread pool. Either way keep-alive requests and a 3 MiB response are served.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task With_ApplicationOnEngineThread_the_handler_runs_on_the_engine_thread(bool onEngine)
    {
        var options = SimulatedPair.DefaultOptions();
        options.ApplicationOnEngineThread = onEngine;
        using var pair = SimulatedPair.Create(options);
        var app = BuildApp(pair);
        app.MapGet("/thread", () => Results.Text(Thread.CurrentThread.Name ?? "(pool)", "text/plain"));
        app.MapGet("/big", (HttpContext c) => c.Response.Body.WriteAsync(new byte[3 << 20]).AsTask());
        await app.StartAsync();

        var client = await pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080)).WaitAsync(Timeout);
        var reader = new ResponseReader(client);
        for (var i = 0; i < 3; i++)
        {
            await client.SendAsync(Encoding.ASCII.GetBytes("GET /thread HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
            var (status, body) = await reader.ReadAsync().WaitAsync(Timeout);
            Assert.Equal(200, status);
            var thread = Encoding.ASCII.GetString(body);

            // The first request may be read before Kestrel waits on the input (on the pool thread that starts the
            // connection); every later one wakes Kestrel's waiting read, inline on the engine thread when asked.
            if (i > 0 || !onEngine)
            {
                Assert.True(onEngine == thread.StartsWith("vso-engine", StringComparison.Ordinal), $"request {i} ran on '{thread}'");
            }
        }

        await client.SendAsync(Encoding.ASCII.GetBytes("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
        Assert.Equal(3 << 20, (await reader.ReadAsync().WaitAsync(Timeout)).Body.Length);
        await app.StopAsync().WaitAsync(Timeout);
        await SimulatedPair.WaitUntil(() => pair.Factory.PinnedBytes == 0, "pinned bytes back to zero after StopAsync");
        await app.DisposeAsync();
    }

    /// <summary>
    /// Issue 12 with the hardening issue's containment: by default a keep-alive request runs on the engine thread, and a
    /// handler that holds it (a synchronous wait, or a long computation) is relieved. Another connection is served meanwhile (it could not be
    /// if the loop waited for the handler, which is released only after that connection's answers), on the thread pool;
    /// the stall is counted once; the blocking connection's later requests run on the thread pool, the other's on the
    /// engine thread again.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_handler_that_blocks_the_engine_thread_is_relieved_and_its_connection_moves_to_the_thread_pool(bool computes)
    {
        var options = SimulatedPair.DefaultOptions();
        Assert.True(new VsoTransportOptions().ApplicationOnEngineThread);
        options.ApplicationOnEngineThread = true;
        using var pair = SimulatedPair.Create(options);
        var app = BuildApp(pair);
        var entered = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var release = new ManualResetEventSlim(false);
        app.MapGet("/thread", () => Results.Text(Thread.CurrentThread.Name ?? "(pool)", "text/plain"));
        app.MapGet("/block", () =>
        {
            entered.TrySetResult(Thread.CurrentThread.Name ?? "(pool)");
            if (computes)
            {
                var deadline = DateTime.UtcNow + Timeout;
                while (!release.IsSet && DateTime.UtcNow < deadline)
                {
                    Thread.SpinWait(100);
                }
            }
            else
            {
                release.Wait(Timeout);
            }

            return Results.Text("released", "text/plain");
        });
        await app.StartAsync();
        var server = new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080);

        async Task<string> GetAsync(VsoConnection client, ResponseReader reader, string path)
        {
            await client.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
            var (status, body) = await reader.ReadAsync().WaitAsync(Timeout);
            Assert.Equal(200, status);
            return Encoding.ASCII.GetString(body);
        }

        var blocking = await pair.Client.ConnectAsync(server).WaitAsync(Timeout);
        var other = await pair.Client.ConnectAsync(server).WaitAsync(Timeout);
        var blockingReader = new ResponseReader(blocking);
        var otherReader = new ResponseReader(other);
        foreach (var (client, reader) in new[] { (blocking, blockingReader), (other, otherReader) })
        {
            await GetAsync(client, reader, "/thread");
            Assert.StartsWith("vso-engine", await GetAsync(client, reader, "/thread"), StringComparison.Ordinal);
        }

        await blocking.SendAsync(Encoding.ASCII.GetBytes("GET /block HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
        Assert.StartsWith("vso-engine", await entered.Task.WaitAsync(Timeout), StringComparison.Ordinal);
        for (var i = 0; i < 3; i++)
        {
            Assert.DoesNotContain("vso-engine", await GetAsync(other, otherReader, "/thread"), StringComparison.Ordinal);
        }

        release.Set();
        Assert.Equal("released", Encoding.ASCII.GetString((await blockingReader.ReadAsync().WaitAsync(Timeout)).Body));
        Assert.Equal(1, pair.Factory.Stack!.Shards[0].AfterTurn.Stalls);
        Assert.DoesNotContain("vso-engine", await GetAsync(blocking, blockingReader, "/thread"), StringComparison.Ordinal);
        Assert.StartsWith("vso-engine", await GetAsync(other, otherReader, "/thread"), StringComparison.Ordinal);

        await app.StopAsync().WaitAsync(Timeout);
        await app.DisposeAsync();
    }

    /// <summary>
    /// A client that sends its FIN in the middle of a 16 MiB response (shutdown(SHUT_WR)). As on Kestrel's Sockets transport
    /// (ConnectionClosedOnPeerFin, the default): Kestrel hears the client leave, RequestAborted fires, the response stops
    /// and the connection ends with FIN after what was already flushed, no RST. With the setting off: the whole response.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_client_FIN_mid_response_aborts_the_request_as_on_Sockets_unless_turned_off(bool closedOnPeerFin)
    {
        var options = SimulatedPair.DefaultOptions();
        options.ConnectionClosedOnPeerFin = closedOnPeerFin;
        using var pair = SimulatedPair.Create(options);
        var app = BuildApp(pair);
        var aborted = new TaskCompletionSource();
        const int Length = 16 << 20;
        app.MapGet("/big", async (HttpContext c) =>
        {
            c.RequestAborted.Register(() => aborted.TrySetResult());
            c.Response.ContentLength = Length;
            var chunk = new byte[64 * 1024];
            for (var sent = 0; sent < Length && !c.RequestAborted.IsCancellationRequested; sent += chunk.Length)
            {
                try
                {
                    await c.Response.Body.WriteAsync(chunk, c.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        await app.StartAsync();

        var client = await pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080)).WaitAsync(Timeout);
        await client.SendAsync(Encoding.ASCII.GetBytes("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);

        // The response has started: its first bytes are here. Then the client's FIN.
        var buffer = new byte[256 * 1024];
        long received = await client.ReceiveAsync(buffer).AsTask().WaitAsync(Timeout);
        client.ShutdownSend();
        while (true)
        {
            // An RST would throw here: the end must be an orderly FIN either way.
            var n = await client.ReceiveAsync(buffer).AsTask().WaitAsync(Timeout);
            if (n == 0)
            {
                break;
            }

            received += n;
        }

        if (closedOnPeerFin)
        {
            await aborted.Task.WaitAsync(Timeout);
            Assert.True(received < Length, $"the whole response arrived ({received} bytes) although the client left");
        }
        else
        {
            Assert.False(aborted.Task.IsCompleted, "RequestAborted fired although ConnectionClosedOnPeerFin is false");
            Assert.True(received > Length, $"{received} bytes: the response (16 MiB and its head) was cut short");
        }

        await app.StopAsync().WaitAsync(Timeout);
        await SimulatedPair.WaitUntil(() => pair.Factory.PinnedBytes == 0, "pinned bytes back to zero after StopAsync");
        await app.DisposeAsync();
    }

    [Fact]
    public async Task Kestrel_binds_a_dynamic_port_and_reports_it_in_its_addresses()
    {
        using var pair = SimulatedPair.Create();
        var builder = WebApplication.CreateBuilder();
        builder.Services.AddSingleton<IConnectionListenerFactory>(pair.Factory);
        builder.WebHost.UseUrls($"http://{SimulatedPair.ServerAddress}:0");
        var app = builder.Build();
        app.MapGet("/", () => Results.Text("dynamic", "text/plain"));
        await app.StartAsync();

        // Kestrel reads the bound port back from the listener's EndPoint into IServerAddressesFeature (app.Urls).
        var url = new Uri(Assert.Single(app.Urls));
        Assert.Equal(SimulatedPair.ServerAddress, url.Host);
        Assert.InRange(url.Port, 49152, 65535);
        var client = await pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), url.Port)).WaitAsync(Timeout);
        var reader = new ResponseReader(client);
        await client.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n")).WaitAsync(Timeout);
        var (status, body) = await reader.ReadAsync().WaitAsync(Timeout);
        Assert.Equal(200, status);
        Assert.Equal("dynamic", Encoding.ASCII.GetString(body));
        await app.StopAsync().WaitAsync(Timeout);
        await app.DisposeAsync();
    }

    /// <summary>
    /// Issue 12 item 4, with Kestrel's own threads: 240 connections with Connection: close, four at a time, each answered
    /// with its own request's number, so a connection that read or wrote through a reused pipe, writer or TCP connection of
    /// another would show; the transport's state and the stack's connections are reused (far fewer built than connections).
    /// </summary>
    [Fact]
    public async Task Kestrel_serves_connections_that_reuse_pooled_state_each_with_its_own_bytes()
    {
        using var pair = SimulatedPair.Create();
        var app = BuildApp(pair);
        app.MapGet("/n/{n}", (string n, HttpContext c) => Results.Text(n + " " + c.Connection.Id, "text/plain"));
        await app.StartAsync();

        var ids = new System.Collections.Concurrent.ConcurrentDictionary<string, byte>();
        var workers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            for (var i = 0; i < 60; i++)
            {
                var n = (w * 1000) + i;
                var client = await pair.Client.ConnectAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 8080)).WaitAsync(Timeout);
                await client.SendAsync(Encoding.ASCII.GetBytes($"GET /n/{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).WaitAsync(Timeout);
                var (status, body) = await new ResponseReader(client).ReadAsync().WaitAsync(Timeout);
                Assert.Equal(200, status);
                var text = Encoding.ASCII.GetString(body).Split(' ');
                Assert.Equal(n.ToString(System.Globalization.CultureInfo.InvariantCulture), text[0]);
                Assert.True(ids.TryAdd(text[1], 0), $"connection id {text[1]} seen twice");
                Assert.Equal(0, await client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                await client.CloseAsync().WaitAsync(Timeout);
            }
        })).ToArray();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromMinutes(2));

        var layer = pair.Factory.Stack!.Core.Tcp;
        Assert.True(layer.ConnectionsBuilt < 120, $"{layer.ConnectionsBuilt} TcpConnections built for 240 connections");
        await app.StopAsync().WaitAsync(Timeout);
        await SimulatedPair.WaitUntil(() => pair.Factory.PinnedBytes == 0, "pinned bytes back to zero after StopAsync");
        await app.DisposeAsync();
    }

    /// <summary>Reads HTTP/1.1 responses with Content-Length or chunked bodies from a VsoConnection.</summary>
    /// <summary>An app on the pair's server transport, listening on port 8080 of the server's address, routes still to map.</summary>
    private static WebApplication BuildApp(SimulatedPair pair)
    {
        var builder = WebApplication.CreateBuilder();
        builder.Services.AddSingleton<IConnectionListenerFactory>(pair.Factory);
        builder.WebHost.UseUrls($"http://{SimulatedPair.ServerAddress}:8080");
        return builder.Build();
    }

    private sealed class ResponseReader(VsoConnection connection)
    {
        private readonly List<byte> _buffer = [];

        public async Task<(int Status, byte[] Body)> ReadAsync()
        {
            var headerEnd = await FillUntilAsync(b => IndexOf(b, "\r\n\r\n"u8));
            var head = Encoding.ASCII.GetString(_buffer.GetRange(0, headerEnd).ToArray());
            _buffer.RemoveRange(0, headerEnd + 4);
            var status = int.Parse(head.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
            var lines = head.Split("\r\n");
            var lengthLine = lines.FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            if (lengthLine is not null)
            {
                var length = int.Parse(lengthLine.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                await FillUntilAsync(b => b.Count >= length ? length : -1);
                var body = _buffer.GetRange(0, length).ToArray();
                _buffer.RemoveRange(0, length);
                return (status, body);
            }

            var result = new List<byte>();
            while (true)
            {
                var lineEnd = await FillUntilAsync(b => IndexOf(b, "\r\n"u8));
                var size = Convert.ToInt32(Encoding.ASCII.GetString(_buffer.GetRange(0, lineEnd).ToArray()), 16);
                _buffer.RemoveRange(0, lineEnd + 2);
                await FillUntilAsync(b => b.Count >= size + 2 ? size : -1);
                result.AddRange(_buffer.GetRange(0, size));
                _buffer.RemoveRange(0, size + 2);
                if (size == 0)
                {
                    return (status, result.ToArray());
                }
            }
        }

        private async Task<int> FillUntilAsync(Func<List<byte>, int> find)
        {
            var chunk = new byte[64 * 1024];
            while (true)
            {
                var at = find(_buffer);
                if (at >= 0)
                {
                    return at;
                }

                var n = await connection.ReceiveAsync(chunk);
                if (n == 0)
                {
                    throw new EndOfStreamException();
                }

                _buffer.AddRange(chunk.AsSpan(0, n).ToArray());
            }
        }

        private static int IndexOf(List<byte> buffer, ReadOnlySpan<byte> pattern)
        {
            for (var i = 0; i + pattern.Length <= buffer.Count; i++)
            {
                var match = true;
                for (var k = 0; k < pattern.Length && match; k++)
                {
                    match = buffer[i + k] == pattern[k];
                }

                if (match)
                {
                    return i;
                }
            }

            return -1;
        }
    }
}
