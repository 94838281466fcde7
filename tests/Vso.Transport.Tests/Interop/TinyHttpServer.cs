using System.Security.Cryptography;
using System.Text;
using Vso.Transport.Api;

namespace Vso.Transport.Tests.Interop;

/// <summary>
/// A minimal HTTP/1.1 responder on the embedding API, for interop tests and benchmarks. GET /bytes/N answers N
/// bytes where byte i is (byte)(i % 251); POST or PUT (any path) reads the body (Content-Length, honouring
/// Expect: 100-continue) and answers its SHA-256 in hex. Keep-alive unless the client sends Connection: close.
/// </summary>
public sealed class TinyHttpServer : IAsyncDisposable
{
    /// <summary>251 × 4096 bytes of the pattern: any chunk that is a multiple of 251 long continues it seamlessly.</summary>
    private static readonly byte[] Pattern = CreatePattern();

    private readonly VsoListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly List<Task> _connections = [];
    private int _accepted;
    private int _failed;

    public TinyHttpServer(VsoStack stack, ushort port)
    {
        ArgumentNullException.ThrowIfNull(stack);
        _listener = stack.Listen(port);
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public int ConnectionsAccepted => Volatile.Read(ref _accepted);

    /// <summary>Connections accepted per shard of the stack, when <see cref="ShardOf"/> says which shard owns each.</summary>
    public int[] AcceptedPerShard { get; } = new int[64];

    /// <summary>The shard that owns an accepted connection (set by a test that sees the stack's internals).</summary>
    public Func<VsoConnection, int>? ShardOf { get; set; }

    /// <summary>The stack's TCP info for the connection that served the last /bytes/N download, once it was acknowledged.</summary>
    public Vso.Transport.Api.TcpConnectionInfo? LastDownloadInfo { get; private set; }

    public int ConnectionsFailed => Volatile.Read(ref _failed);

    /// <summary>
    /// When set, /bytes/N is sent from blocks of this pool (the pattern copied into them once) rather than from a managed
    /// array: with an AF_XDP link whose UMEM covers the pool, the payload is then read in place.
    /// </summary>
    public Vso.MemoryPinning.PinnedBlockPool? SendPool
    {
        get => _sendPool;
        set
        {
            if (value is null)
            {
                foreach (var block in _patternBlocks ?? [])
                {
                    block.Dispose();
                }

                _patternBlocks = null;
            }

            _sendPool = value;
        }
    }

    private Vso.MemoryPinning.PinnedBlockPool? _sendPool;
    private Vso.MemoryPinning.PinnedBlock[]? _patternBlocks;

    /// <summary>The pattern in 251 blocks of 4096 bytes: block k holds bytes k × 4096 on, so the blocks in turn continue it.</summary>
    private Vso.MemoryPinning.PinnedBlock[] PatternBlocks(Vso.MemoryPinning.PinnedBlockPool pool)
    {
        lock (_connections)
        {
            if (_patternBlocks is null)
            {
                var blocks = new Vso.MemoryPinning.PinnedBlock[251];
                for (var k = 0; k < blocks.Length; k++)
                {
                    blocks[k] = pool.Rent(4096);
                    Pattern.AsSpan(k * 4096, 4096).CopyTo(blocks[k].GetSpan());
                }

                _patternBlocks = blocks;
            }

            return _patternBlocks;
        }
    }

    /// <summary>Pipelined sends in flight per response (each pins one chunk of the pattern until acknowledged).</summary>
    public int SendsInFlight { get; set; } = 8;

    public static byte ExpectedByte(long i) => (byte)(i % 251);

    public static string ExpectedSha256(long length)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (long done = 0; done < length;)
        {
            var n = (int)Math.Min(Pattern.Length, length - done);
            hash.AppendData(Pattern, 0, n);
            done += n;
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static byte[] CreatePattern()
    {
        var pattern = GC.AllocateUninitializedArray<byte>(251 * 4096, pinned: true);
        for (var i = 0; i < pattern.Length; i++)
        {
            pattern[i] = (byte)(i % 251);
        }

        return pattern;
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            VsoConnection connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (System.Threading.Channels.ChannelClosedException)
            {
                return;
            }

            Interlocked.Increment(ref _accepted);
            if (ShardOf is { } shardOf)
            {
                Interlocked.Increment(ref AcceptedPerShard[shardOf(connection)]);
            }
            var task = Task.Run(() => ServeAsync(connection));
            lock (_connections)
            {
                _connections.RemoveAll(t => t.IsCompleted);
                _connections.Add(task);
            }
        }
    }

    private async Task ServeAsync(VsoConnection connection)
    {
        var buffer = new byte[64 * 1024];
        var filled = 0;
        try
        {
            while (true)
            {
                // Read a request head.
                int headEnd;
                while ((headEnd = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
                {
                    if (filled == buffer.Length)
                    {
                        await SendTextAsync(connection, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ConfigureAwait(false);
                        await connection.CloseAsync().ConfigureAwait(false);
                        return;
                    }

                    var n = await connection.ReceiveAsync(buffer.AsMemory(filled)).ConfigureAwait(false);
                    if (n == 0)
                    {
                        await connection.CloseAsync().ConfigureAwait(false);
                        return;
                    }

                    filled += n;
                }

                var head = Encoding.ASCII.GetString(buffer, 0, headEnd);
                var bodyStart = headEnd + 4;
                var lines = head.Split("\r\n");
                var requestLine = lines[0].Split(' ');
                long contentLength = 0;
                var expectContinue = false;
                var close = false;
                foreach (var line in lines.Skip(1))
                {
                    var colon = line.IndexOf(':', StringComparison.Ordinal);
                    if (colon <= 0)
                    {
                        continue;
                    }

                    var name = line[..colon].Trim();
                    var value = line[(colon + 1)..].Trim();
                    if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                    {
                        contentLength = long.Parse(value, System.Globalization.CultureInfo.InvariantCulture);
                    }
                    else if (name.Equals("Expect", StringComparison.OrdinalIgnoreCase) && value.Equals("100-continue", StringComparison.OrdinalIgnoreCase))
                    {
                        expectContinue = true;
                    }
                    else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase) && value.Equals("close", StringComparison.OrdinalIgnoreCase))
                    {
                        close = true;
                    }
                }

                var method = requestLine[0];
                var path = requestLine.Length > 1 ? requestLine[1] : "/";
                if (path.IndexOf('?', StringComparison.Ordinal) is var query and >= 0)
                {
                    path = path[..query];
                }

                if (method is "POST" or "PUT")
                {
                    if (expectContinue)
                    {
                        await SendTextAsync(connection, "HTTP/1.1 100 Continue\r\n\r\n").ConfigureAwait(false);
                    }

                    using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                    var inBuffer = (int)Math.Min(filled - bodyStart, contentLength);
                    hash.AppendData(buffer, bodyStart, inBuffer);
                    var remaining = contentLength - inBuffer;
                    var consumed = bodyStart + inBuffer;
                    Array.Copy(buffer, consumed, buffer, 0, filled - consumed);
                    filled -= consumed;
                    while (remaining > 0)
                    {
                        var n = await connection.ReceiveAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining))).ConfigureAwait(false);
                        if (n == 0)
                        {
                            return;
                        }

                        hash.AppendData(buffer, 0, n);
                        remaining -= n;
                    }

                    var hex = Convert.ToHexStringLower(hash.GetHashAndReset());
                    await SendTextAsync(connection, $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {hex.Length}\r\n{(close ? "Connection: close\r\n" : "")}\r\n{hex}").ConfigureAwait(false);
                }
                else
                {
                    Array.Copy(buffer, bodyStart, buffer, 0, filled - bodyStart);
                    filled -= bodyStart;
                    if (method == "GET" && path.StartsWith("/bytes/", StringComparison.Ordinal) && long.TryParse(path["/bytes/".Length..], out var length) && length >= 0)
                    {
                        await SendTextAsync(connection, $"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\n{(close ? "Connection: close\r\n" : "")}\r\n").ConfigureAwait(false);
                        await SendPatternAsync(connection, length).ConfigureAwait(false);
                        LastDownloadInfo = connection.GetInfo();
                    }
                    else
                    {
                        await SendTextAsync(connection, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").ConfigureAwait(false);
                    }
                }

                if (close)
                {
                    await connection.CloseAsync().ConfigureAwait(false);
                    return;
                }
            }
        }
        catch (Exception)
        {
            Interlocked.Increment(ref _failed);
            connection.Abort();
        }
    }

    private static Task SendTextAsync(VsoConnection connection, string text) => connection.SendAsync(Encoding.ASCII.GetBytes(text));

    private async Task SendPatternAsync(VsoConnection connection, long length)
    {
        var inFlight = new Queue<Task>();
        var blocks = _sendPool is { } pool ? PatternBlocks(pool) : null;
        var k = 0;
        for (long sent = 0; sent < length;)
        {
            var n = (int)Math.Min(blocks is null ? Pattern.Length : 4096, length - sent);
            inFlight.Enqueue(connection.SendAsync(blocks is null ? Pattern.AsMemory(0, n) : blocks[k++ % blocks.Length].Memory[..n]));
            sent += n;
            if (inFlight.Count >= (blocks is null ? SendsInFlight : SendsInFlight * 64))
            {
                await inFlight.Dequeue().ConfigureAwait(false);
            }
        }

        while (inFlight.Count > 0)
        {
            await inFlight.Dequeue().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        Task[] pending;
        lock (_connections)
        {
            pending = [.. _connections];
        }

        await Task.WhenAny(Task.WhenAll(pending), Task.Delay(2000)).ConfigureAwait(false);
        _stop.Dispose();
    }
}
