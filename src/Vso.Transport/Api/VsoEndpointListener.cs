using System.Runtime.CompilerServices;
using Vso.Transport.Engine;
using Vso.Transport.Tcp;

namespace Vso.Transport.Api;

/// <summary>
/// A passive open (RFC 9293 §3.10.1 LISTEN) that hands each established connection to the embedding as a
/// <see cref="VsoConnectionEndpoint"/>, on the engine thread. The backlog counts connections handed over but not yet
/// taken (<see cref="TakeAccepted"/>), so an embedding that queues them for an accept loop holds SYNs back while it lags.
/// With several shards the port is bound on every shard and each hands over, on its own engine thread, the connections
/// whose flows it owns; the backlog is counted over all of them.
/// </summary>
public sealed class VsoEndpointListener : IDisposable
{
    private readonly VsoStack _stack;
    private readonly Func<VsoConnectionEndpoint, bool> _onAccepted;
    private readonly StrongBox<int> _awaitingAccept = new();
    private readonly TcpListenerCore[] _cores;
    private int _disposed;

    internal VsoEndpointListener(VsoStack stack, Func<VsoConnectionEndpoint, bool> onAccepted)
    {
        _stack = stack;
        _onAccepted = onAccepted;
        _cores = new TcpListenerCore[stack.Shards.Length];
    }

    /// <summary>The bound port: the one asked for, or the one chosen for port 0.</summary>
    public ushort Port => _cores[0].Port;

    /// <summary>
    /// Binds <paramref name="port"/> on every shard, or on shard 0 a free one for 0 (under its gate, since a free port is one
    /// no connection uses either) and then that one on the others. A shard that refuses unbinds the ones already bound.
    /// </summary>
    internal void Bind(ushort port, int backlog)
    {
        var shards = _stack.Shards;
        var bound = 0;
        try
        {
            for (; bound < shards.Length; bound++)
            {
                var shard = shards[bound];
                lock (shard.Gate)
                {
                    _cores[bound] = shard.Tcp.Listen(bound == 0 ? port : _cores[0].Port, backlog, new Observer(this, shard), _awaitingAccept);
                }
            }
        }
        catch
        {
            for (var i = 0; i < bound; i++)
            {
                shards[i].Tcp.Unlisten(_cores[i]);
            }

            throw;
        }
    }

    /// <summary>Any thread: the embedding's application took a connection handed over; its backlog place is free.</summary>
    public void TakeAccepted() => _cores[0].TakeAccepted();

    /// <summary>
    /// Any thread: stops taking connections but keeps the port, so new SYNs get no answer at all (the peer retries, as
    /// after a loss: a balancer moves on, a restarted server may take the retry) until <see cref="Dispose"/>, after which
    /// they are answered with RST. Handshakes under way are reset when they complete. Connections handed over live on.
    /// </summary>
    public void StopAccepting()
    {
        foreach (var core in _cores)
        {
            core.IsSilenced = true;
        }
    }

    /// <summary>Any thread: unbinds at once; new SYNs are answered with RST. Connections handed over live on.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            for (var i = 0; i < _cores.Length; i++)
            {
                _stack.Shards[i].Tcp.Unlisten(_cores[i]);
            }
        }
    }

    /// <summary>Engine thread of one shard: each connection that completed its handshake goes to the callback, which attaches to it or refuses it (RST).</summary>
    private sealed class Observer(VsoEndpointListener listener, NetworkStack shard) : ITcpListenerObserver
    {
        void ITcpListenerObserver.OnConnectionReady(TcpListenerCore core)
        {
            while (core.TryDequeue(out var tcp))
            {
                var endpoint = new VsoConnectionEndpoint(listener._stack, shard, tcp);
                core.HandedOver();
                if (!listener._onAccepted(endpoint))
                {
                    core.TakeAccepted();
                    tcp.Abort();
                }
            }
        }
    }
}
