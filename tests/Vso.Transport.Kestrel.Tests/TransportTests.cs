using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// The behaviours Kestrel's own transport tests check, against the Vso transport over a simulated wire in virtual time (<see cref="VirtualPair"/>):
/// echo, backpressure both ways, completing output, abort, unbind, failed bind, stale descriptors, pinned bytes.
/// </summary>
public sealed class TransportTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly IPEndPoint Endpoint = new(IPAddress.Parse(SimulatedPair.ServerAddress), 8080);

    [Theory]
    [InlineData(IdentifyMode.Pinned)]
    [InlineData(IdentifyMode.Copy)]
    public void Echo_round_trips_4_MiB_and_releases_every_block(IdentifyMode mode)
    {
        var options = SimulatedPair.DefaultOptions();
        options.IdentifyMode = mode;
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, accepted) = await OpenAsync(pair);
                await using var server = accepted;
                var echo = EchoAsync(server);

                var data = RandomNumberGenerator.GetBytes(4 << 20);
                var send = client.SendAsync(data);
                var received = await ReceiveExactlyAsync(client, data.Length).WaitAsync(Timeout);
                await send.WaitAsync(Timeout);
                Assert.Equal(SHA256.HashData(data), SHA256.HashData(received));

                client.ShutdownSend();
                await echo.WaitAsync(Timeout);
                Assert.Equal(0, await client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                var info = ((VsoTransportConnection)server).GetInfo();
                Assert.Equal(mode == IdentifyMode.Copy ? info.FirstTransmissionBytes : 0, info.FirstTransmissionCopiedBytes);
                await server.DisposeAsync();
                await listener.UnbindAsync();
                await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            },
            options);
    }

    [Fact]
    public void Output_backpressure_holds_flush_until_the_peer_reads()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, accepted) = await OpenAsync(pair);
                var server = (VsoTransportConnection)accepted;

                // The client does not read: its 1 MiB window fills, the server's unacknowledged bytes pile up.
                var output = server.Transport.Output;
                var chunk = new byte[64 * 1024];
                ValueTask<FlushResult> flush = default;
                var written = 0L;
                var deadline = DateTime.UtcNow + Timeout;
                while (DateTime.UtcNow < deadline)
                {
                    output.Write(chunk);
                    written += chunk.Length;
                    flush = output.FlushAsync();
                    if (!flush.IsCompleted)
                    {
                        break;
                    }
            }

            Assert.False(flush.IsCompleted, "FlushAsync never waited: no output backpressure");
            // The flush waited at the pause threshold; ACKs for what the client's window took may lower the figure since, but a
            // waiting flush holds until it falls below the resume threshold.
            Assert.True(flush.IsCompleted || server.Output.InFlightBytes >= server.Output.ResumeThreshold, $"in flight {server.Output.InFlightBytes} < resume {server.Output.ResumeThreshold} while the flush waits");
            await pair.Delay(TimeSpan.FromMilliseconds(300));
            Assert.False(flush.IsCompleted, "FlushAsync completed although the peer reads nothing");

            // The client reads: ACKs release blocks, the flush completes.
            var reader = ReceiveExactlyAsync(pair.Client, client, written);
            var result = await flush.AsTask().WaitAsync(Timeout);
            Assert.False(result.IsCompleted);
            await output.CompleteAsync();
            await reader.WaitAsync(Timeout);
            await server.DisposeAsync();
            await listener.UnbindAsync();
            await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            });
    }

    [Fact]
    public void Input_backpressure_closes_the_window_until_the_application_reads()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);

                // 8 MiB against a 1 MiB input pipe plus a 1 MiB receive buffer: the send cannot complete while nobody reads.
                var data = RandomNumberGenerator.GetBytes(8 << 20);
                var send = client.SendAsync(data);
                await pair.Until(() => client.Tcp!.Sender.PeerWindow == 0, "the server's window to close (zero window advertised)");
                await pair.Delay(TimeSpan.FromMilliseconds(300));
                Assert.Equal(0u, client.Tcp!.Sender.PeerWindow);
                Assert.False(send.IsCompleted, "the peer acknowledged everything although the application read nothing");

                // The application reads: the window opens, everything arrives in order.
                var received = new MemoryStream();
                while (received.Length < data.Length)
                {
                    var result = await server.Transport.Input.ReadAsync().AsTask().WaitAsync(Timeout);
                    foreach (var segment in result.Buffer)
                    {
                        received.Write(segment.Span);
                    }

                    server.Transport.Input.AdvanceTo(result.Buffer.End);
            }

            await send.WaitAsync(Timeout);
            Assert.Equal(SHA256.HashData(data), SHA256.HashData(received.ToArray()));
            await server.DisposeAsync();
            await listener.UnbindAsync();
            });
    }

    [Fact]
    public void Completing_output_sends_the_data_then_FIN()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);

                var payload = "goodbye"u8.ToArray();
                server.Transport.Output.Write(payload);
                Assert.Equal(payload.Length, server.Transport.Output.UnflushedBytes);
                await server.Transport.Output.CompleteAsync();

                var received = await ReceiveExactlyAsync(client, payload.Length).WaitAsync(Timeout);
                Assert.Equal(payload, received);
                Assert.Equal(0, await client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                await server.DisposeAsync();
                await listener.UnbindAsync();
            });
    }

    [Fact]
    public void Abort_resets_the_peer_and_fires_ConnectionClosed()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);
                var closed = new TaskCompletionSource();
                server.ConnectionClosed.Register(() => closed.TrySetResult());

                server.Abort(new ConnectionAbortedException("test abort"));
                await closed.Task.WaitAsync(Timeout);
                var error = await Assert.ThrowsAsync<TcpConnectionException>(() => client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                Assert.Equal(TcpError.Reset, error.Error);
                await server.DisposeAsync();
                await listener.UnbindAsync();
                await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            });
    }

    /// <summary>
    /// Kestrel's Sockets transport (SocketConnection.Shutdown) closes with linger 0, i.e. RST, when its send loop ends with
    /// an error, which is what an application completing Transport.Output with an exception causes; unflushed bytes are
    /// dropped. The peer sees a reset, not an orderly end of stream that would pass a truncated response as complete.
    /// </summary>
    [Fact]
    public void Completing_output_with_an_exception_resets_the_peer()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);
                var closed = new TaskCompletionSource();
                server.ConnectionClosed.Register(() => closed.TrySetResult());

                server.Transport.Output.Write("never sent"u8);
                await server.Transport.Output.CompleteAsync(new InvalidOperationException("application failed mid-response"));

                var error = await Assert.ThrowsAsync<TcpConnectionException>(() => client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                Assert.Equal(TcpError.Reset, error.Error);
                await closed.Task.WaitAsync(Timeout);
                await server.DisposeAsync();
                await listener.UnbindAsync();
                await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            });
    }

    /// <summary>FinOnError (SocketTransportOptions.FinOnError's counterpart): an error or an abort ends with FIN after the flushed data.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void With_FinOnError_errors_and_aborts_end_with_FIN_after_the_flushed_data(bool abort)
    {
        var options = SimulatedPair.DefaultOptions();
        options.FinOnError = true;
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);

                var payload = "flushed before the error"u8.ToArray();
                await server.Transport.Output.WriteAsync(payload);
                if (abort)
                {
                    server.Abort(new ConnectionAbortedException("test abort"));
            }
            else
            {
                await server.Transport.Output.CompleteAsync(new InvalidOperationException("application failed"));
            }

            var received = await ReceiveExactlyAsync(client, payload.Length).WaitAsync(Timeout);
            Assert.Equal(payload, received);
            Assert.Equal(0, await client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
            await server.DisposeAsync();
            await listener.UnbindAsync();
            await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            },
            options);
    }

    /// <summary>
    /// Kestrel's Sockets transport completes Transport.Input and then fires ConnectionClosed when its receive loop reads the
    /// peer's FIN (SocketConnection.DoReceive), which is how Kestrel learns that a client left (RequestAborted, HTTP/2).
    /// The TCP connection is only half-closed (RFC 9293 §3.10.4, CLOSE-WAIT): the server can still send.
    /// </summary>
    [Fact]
    public void Peer_FIN_completes_input_and_fires_ConnectionClosed_while_the_server_can_still_send()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);
                var closed = new TaskCompletionSource();
                server.ConnectionClosed.Register(() => closed.TrySetResult());

                await client.SendAsync("request"u8.ToArray()).WaitAsync(Timeout);
                client.ShutdownSend();
                Assert.Equal("request"u8.ToArray(), await ReadToEndAsync(server.Transport.Input).WaitAsync(Timeout));
                await closed.Task.WaitAsync(Timeout);
                Assert.Equal(TcpState.CloseWait, ((VsoTransportConnection)server).GetInfo().State);

                // Half-closed, not closed: what the application still writes reaches the client, then FIN.
                await server.Transport.Output.WriteAsync("response"u8.ToArray());
                await server.Transport.Output.CompleteAsync();
                Assert.Equal("response"u8.ToArray(), await ReceiveExactlyAsync(client, 8).WaitAsync(Timeout));
                Assert.Equal(0, await client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                await server.DisposeAsync();
                await listener.UnbindAsync();
                await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            });
    }

    /// <summary>ConnectionClosedOnPeerFin = false keeps the earlier behaviour: ConnectionClosed waits for the whole TCP connection to end.</summary>
    [Fact]
    public void Without_ConnectionClosedOnPeerFin_ConnectionClosed_waits_for_the_connection_to_end()
    {
        var options = SimulatedPair.DefaultOptions();
        options.ConnectionClosedOnPeerFin = false;
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);
                var closed = new TaskCompletionSource();
                server.ConnectionClosed.Register(() => closed.TrySetResult());

                await client.SendAsync("request"u8.ToArray()).WaitAsync(Timeout);
                client.ShutdownSend();
                Assert.Equal("request"u8.ToArray(), await ReadToEndAsync(server.Transport.Input).WaitAsync(Timeout));

                // A round trip after the input ended (the response reaches the client): still not fired.
                await server.Transport.Output.WriteAsync("response"u8.ToArray());
                Assert.Equal("response"u8.ToArray(), await ReceiveExactlyAsync(client, 8).WaitAsync(Timeout));
                Assert.False(closed.Task.IsCompleted, "ConnectionClosed fired on the peer's FIN although ConnectionClosedOnPeerFin is false");
                Assert.Equal(TcpState.CloseWait, ((VsoTransportConnection)server).GetInfo().State);

                // The server's FIN, acknowledged by the client: the TCP connection has ended, ConnectionClosed fires.
                await server.Transport.Output.CompleteAsync();
                Assert.Equal(0, await client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                await closed.Task.WaitAsync(Timeout);
                await server.DisposeAsync();
                await listener.UnbindAsync();
                await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            },
            options);
    }

    /// <summary>
    /// Kestrel aborts with a null reason when a connection ends in order (HTTP/1.1 and HTTP/2 after the client's FIN); the
    /// Sockets transport then shuts the socket down gracefully (SocketConnection.Shutdown(null): FIN, not RST).
    /// </summary>
    [Fact]
    public void Abort_without_a_reason_ends_with_FIN_after_the_flushed_data()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);

                var payload = "flushed before the abort"u8.ToArray();
                await server.Transport.Output.WriteAsync(payload);
                server.Abort(null!);

                // Written after the abort: dropped, and the flush says the connection is done, as on Sockets.
                server.Transport.Output.Write("never sent"u8);
                var late = await server.Transport.Output.FlushAsync().AsTask().WaitAsync(Timeout);
                Assert.True(late.IsCompleted);

                Assert.Equal(payload, await ReceiveExactlyAsync(client, payload.Length).WaitAsync(Timeout));
                Assert.Equal(0, await client.ReceiveAsync(new byte[16]).AsTask().WaitAsync(Timeout));
                await server.DisposeAsync();
                await listener.UnbindAsync();
                await pair.Until(() => pair.Factory.PinnedBytes == 0, "every pinned block back in the pool");
            });
    }

    [Fact]
    public void Unbind_stops_accepting_and_new_connections_are_refused()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);

                await listener.UnbindAsync();
                Assert.Null(await listener.AcceptAsync().AsTask().WaitAsync(Timeout));
                var refused = await Assert.ThrowsAsync<TcpConnectionException>(() => pair.Client.ConnectAsync(Endpoint).WaitAsync(Timeout));
                Assert.Equal(TcpError.Refused, refused.Error);

                // The accepted connection lives on after unbind.
                await client.SendAsync("ping"u8.ToArray()).WaitAsync(Timeout);
                var read = await server.Transport.Input.ReadAsync().AsTask().WaitAsync(Timeout);
                Assert.Equal("ping"u8.ToArray(), read.Buffer.ToArray());
                server.Transport.Input.AdvanceTo(read.Buffer.End);
                await server.DisposeAsync();
            });
    }

    [Fact]
    public void Binding_a_bound_port_fails_with_a_clear_error()
    {
        VirtualPair.Run(
            async pair =>
            {
                var listener = await pair.Factory.BindAsync(Endpoint);
                var error = await Assert.ThrowsAsync<AddressInUseException>(async () => await pair.Factory.BindAsync(Endpoint));
                Assert.Contains("198.18.0.2:8080 is already bound", error.Message, StringComparison.Ordinal);
                await listener.UnbindAsync();

                // Free again after unbind.
                var again = await pair.Factory.BindAsync(Endpoint);
                await again.UnbindAsync();
            });
    }

    [Fact]
    public void Binding_port_0_reports_the_chosen_port_and_accepts_on_it()
    {
        VirtualPair.Run(
            async pair =>
            {
                // Kestrel's dynamic port binding (http://198.18.0.2:0) reads the bound port back from the listener's EndPoint.
                var listener = await pair.Factory.BindAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 0));
                var bound = Assert.IsType<IPEndPoint>(listener.EndPoint);
                Assert.InRange(bound.Port, 49152, 65535);
                var other = await pair.Factory.BindAsync(new IPEndPoint(IPAddress.Parse(SimulatedPair.ServerAddress), 0));
                Assert.NotEqual(bound.Port, ((IPEndPoint)other.EndPoint).Port);

                var accepting = listener.AcceptAsync().AsTask();
                var client = await pair.Client.ConnectAsync(bound).WaitAsync(Timeout);
                await using var server = (await accepting.WaitAsync(Timeout))!;
                Assert.Equal(bound, server.LocalEndPoint);
                client.Abort();
                await listener.UnbindAsync();
                await other.UnbindAsync();
            });
    }

    [Fact]
    public void Selector_claims_only_the_stack_address()
    {
        VirtualPair.Run(
            async pair =>
            {
                Assert.True(pair.Factory.CanBind(Endpoint));
                Assert.False(pair.Factory.CanBind(new IPEndPoint(IPAddress.Loopback, 8080)));
                Assert.False(pair.Factory.CanBind(new IPEndPoint(IPAddress.Any, 8080)));
                Assert.False(pair.Factory.CanBind(new System.Net.Sockets.UnixDomainSocketEndPoint("/tmp/x.sock")));
            });
    }

    [Fact]
    public void Features_expose_ids_endpoints_pool_and_tcp_info()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);

                Assert.Matches("^vso-[0-9a-f]{8}$", server.ConnectionId);
                Assert.Equal(Endpoint, server.LocalEndPoint);
                Assert.Equal(client.LocalEndPoint, server.RemoteEndPoint);
                Assert.IsType<PinnedBlockPool>(server.Features.Get<IMemoryPoolFeature>()!.MemoryPool);
                server.Items["k"] = "v";
                Assert.Equal("v", server.Features.Get<IConnectionItemsFeature>()!.Items["k"]);
                var info = server.Features.Get<IVsoTcpInfoFeature>()!.GetInfo();
                Assert.Equal(TcpState.Established, info.State);
                Assert.True(info.MaxSegmentSize > 0);
                await server.DisposeAsync();
                await listener.UnbindAsync();
            });
    }

    /// <summary>
    /// Issue 12, one copy on receive: in-order bytes go from the frame straight into Transport.Input's pinned memory, never
    /// through the receive buffer, so the stack copies each received byte once (twice through the buffer).
    /// </summary>
    [Fact]
    public void In_order_bytes_are_copied_once_from_the_frame_into_the_input_pipe()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, client, server) = await OpenAsync(pair);
                var data = System.Security.Cryptography.RandomNumberGenerator.GetBytes(768 * 1024); // below the pipe's pause threshold (1 MiB): never paused
                var sending = client.SendAsync(data);

                var received = new MemoryStream();
                while (received.Length < data.Length)
                {
                    var result = await server.Transport.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
                    foreach (var segment in result.Buffer)
                    {
                        received.Write(segment.Span);
                    }

                    server.Transport.Input.AdvanceTo(result.Buffer.End);
            }

            await sending.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(data, received.ToArray());
            var info = server.Features.Get<IVsoTcpInfoFeature>()!.GetInfo();
            Assert.Equal(data.Length, info.ReceiveCopiedBytes);
            await server.DisposeAsync();
            await listener.UnbindAsync();
            });
    }

    /// <summary>
    /// Issue 12 items 4 and 5: with ApplicationOnEngineThread, Kestrel's read of an HTTP/1.x connection resumes inline on the
    /// engine thread once the connection has answered (the first request, the only one with Connection: close, goes to the
    /// pool); one that opens with the HTTP/2 preface (RFC 9113 §3.4) or a TLS handshake record always resumes on the thread
    /// pool, since Kestrel runs HTTP/2 streams on the pool anyway and TLS is CPU the engine must not spend. Without the
    /// setting, always the pool.
    /// </summary>
    [Theory]
    [InlineData(true, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", true)]
    [InlineData(true, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false)]
    [InlineData(true, "\u0016\u0003\u0001\u0000\u0005hello", false)]
    [InlineData(false, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)]
    public async Task Reads_resume_on_the_engine_thread_only_for_HTTP_1(bool onEngine, string first, bool expectEngine)
    {
        var options = SimulatedPair.DefaultOptions();
        options.ApplicationOnEngineThread = onEngine;
        using var pair = SimulatedPair.Create(options);
        var (listener, client, server) = await OpenAsync(pair);
        var read = ReadOnWhichThreadAsync(server.Transport.Input);
        await client.SendAsync(System.Text.Encoding.Latin1.GetBytes(first)).WaitAsync(Timeout);
        var (thread, bytes) = await read.WaitAsync(Timeout);
        Assert.Equal(first.Length, bytes);
        Assert.False(thread.StartsWith("vso-engine", StringComparison.Ordinal), $"the first read resumed on '{thread}'");

        // The server answers; the next request's read resumes inline on the engine thread for HTTP/1.x only.
        await server.Transport.Output.WriteAsync(new byte[] { 1, 2, 3 }).AsTask().WaitAsync(Timeout);
        var answer = new byte[3];
        Assert.Equal(3, await client.ReceiveAsync(answer).AsTask().WaitAsync(Timeout));
        read = ReadOnWhichThreadAsync(server.Transport.Input);
        await client.SendAsync(System.Text.Encoding.Latin1.GetBytes("more")).WaitAsync(Timeout);
        (thread, bytes) = await read.WaitAsync(Timeout);
        Assert.Equal(4, bytes);
        Assert.True(expectEngine == thread.StartsWith("vso-engine", StringComparison.Ordinal), $"the read after the answer resumed on '{thread}'");
        await server.DisposeAsync();
        await listener.UnbindAsync();
    }

    private static async Task<(string Thread, long Bytes)> ReadOnWhichThreadAsync(PipeReader input)
    {
        var result = await input.ReadAsync().ConfigureAwait(false);
        var thread = Thread.CurrentThread.Name ?? "(pool)";
        var length = result.Buffer.Length;
        input.AdvanceTo(result.Buffer.End);
        return (thread, length);
    }

    [Fact]
    public void Host_refuses_a_stale_descriptor_without_reading()
    {
        VirtualPair.Run(
            async pair =>
            {
                var (listener, _, accepted) = await OpenAsync(pair);
                var server = (VsoTransportConnection)accepted;

                var pool = pair.Factory.Pool!;
                var block = pool.Rent();
                var descriptor = new VsoSendRange(block.Address, 100, block.Id, block.Generation);
                var host = server.SendHost;
                var copy = new byte[100];
                host.CopyTo(descriptor, 0, copy); // live: fine
                block.Dispose();
                var stale = Assert.Throws<StaleDescriptorException>(() => host.CopyTo(descriptor, 0, copy));
                Assert.Contains("No memory was read", stale.Message, StringComparison.Ordinal);
                Assert.Throws<StaleDescriptorException>(() => host.Lease(descriptor, 0, 10));
                await server.DisposeAsync();
                await listener.UnbindAsync();
            });
    }

    /// <summary>Binds the transport's endpoint, connects the simulated client and accepts: (listener, client, server).</summary>
    private static Task<(IConnectionListener Listener, VsoConnection Client, ConnectionContext Server)> OpenAsync(VirtualPair pair) =>
        OpenAsync(pair.Factory, pair.Client);

    /// <summary>The same in real time, for what only real threads show.</summary>
    private static Task<(IConnectionListener Listener, VsoConnection Client, ConnectionContext Server)> OpenAsync(SimulatedPair pair) =>
        OpenAsync(pair.Factory, pair.Client);

    private static async Task<(IConnectionListener Listener, VsoConnection Client, ConnectionContext Server)> OpenAsync(VsoTransportFactory factory, VsoStack clientStack)
    {
        var listener = await factory.BindAsync(Endpoint);
        var acceptTask = listener.AcceptAsync().AsTask();
        var client = await clientStack.ConnectAsync(Endpoint).WaitAsync(Timeout);
        return (listener, client, (await acceptTask.WaitAsync(Timeout))!);
    }

    private static async Task<byte[]> ReadToEndAsync(PipeReader input)
    {
        var received = new MemoryStream();
        while (true)
        {
            var result = await input.ReadAsync();
            foreach (var segment in result.Buffer)
            {
                received.Write(segment.Span);
            }

            input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return received.ToArray();
            }
        }
    }

    private static async Task EchoAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        while (true)
        {
            var result = await input.ReadAsync();
            foreach (var segment in result.Buffer)
            {
                await output.WriteAsync(segment);
            }

            input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await output.CompleteAsync();
    }

    private static async Task<byte[]> ReceiveExactlyAsync(VsoConnection connection, int length)
    {
        var buffer = new byte[length];
        var offset = 0;
        while (offset < length)
        {
            var n = await connection.ReceiveAsync(buffer.AsMemory(offset, Math.Min(length - offset, 256 * 1024)));
            if (n == 0)
            {
                throw new EndOfStreamException($"end of stream after {offset} of {length} bytes");
            }

            offset += n;
        }

        return buffer;
    }

    private static async Task ReceiveExactlyAsync(VsoStack stack, VsoConnection connection, long length)
    {
        _ = stack;
        var buffer = new byte[256 * 1024];
        long total = 0;
        while (total < length)
        {
            var n = await connection.ReceiveAsync(buffer);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        Assert.Equal(length, total);
    }
}
