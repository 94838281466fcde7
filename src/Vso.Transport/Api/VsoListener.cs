using System.Threading.Channels;

namespace Vso.Transport.Api;

/// <summary>A bound port: accepts connections whose handshake completed.</summary>
public sealed class VsoListener : IDisposable
{
    private readonly VsoStack _stack;
    private readonly Channel<VsoConnection> _accepted;
    private readonly VsoEndpointListener _endpoints;
    private int _disposed;

    internal VsoListener(VsoStack stack, ushort port, int backlog)
    {
        _stack = stack;
        _accepted = Channel.CreateUnbounded<VsoConnection>(new UnboundedChannelOptions
        {
            SingleWriter = stack.Shards.Length == 1, // each shard's engine thread writes the connections it accepted
            AllowSynchronousContinuations = stack.Options.InlineContinuations,
        });
        _endpoints = stack.ListenEndpoints(port, backlog, OnAccepted);
    }

    public ushort Port => _endpoints.Port;

    /// <summary>Waits for the next established connection. Throws <see cref="ChannelClosedException"/> once unbound.</summary>
    public async ValueTask<VsoConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        var connection = await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        _endpoints.TakeAccepted();
        return connection;
    }

    /// <summary>A connection waiting to be accepted, if any (no waiting).</summary>
    public bool TryAccept(out VsoConnection connection)
    {
        if (_accepted.Reader.TryRead(out connection!))
        {
            _endpoints.TakeAccepted();
            return true;
        }

        return false;
    }

    /// <summary>Unbinds: no new connections; ones not yet accepted are reset. Accepted ones live on.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _endpoints.Dispose();
            _accepted.Writer.TryComplete();

            // Each reset runs in its connection's own engine turn.
            while (_accepted.Reader.TryRead(out var pending))
            {
                pending.Abort();
            }
        }
    }

    // Engine thread.
    private bool OnAccepted(VsoConnectionEndpoint endpoint) => _accepted.Writer.TryWrite(new VsoConnection(_stack, endpoint));
}
