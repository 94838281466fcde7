using Vso.Transport.Engine;
using Vso.Transport.Tcp;

namespace Vso.Transport.Api;

/// <summary>
/// A passive open (RFC 9293 §3.10.1 LISTEN) that hands each established connection to the embedding as a
/// <see cref="VsoConnectionEndpoint"/>, on the engine thread. The backlog counts connections handed over but not yet
/// taken (<see cref="TakeAccepted"/>), so an embedding that queues them for an accept loop holds SYNs back while it lags.
/// </summary>
public sealed class VsoEndpointListener : IDisposable
{
    private readonly VsoStack _stack;
    private readonly Func<VsoConnectionEndpoint, bool> _onAccepted;
    private readonly Observer _observer;
    private TcpListenerCore _core = null!;
    private int _disposed;

    internal VsoEndpointListener(VsoStack stack, Func<VsoConnectionEndpoint, bool> onAccepted)
    {
        _stack = stack;
        _onAccepted = onAccepted;
        _observer = new Observer(this);
    }

    /// <summary>The bound port: the one asked for, or the one chosen for port 0.</summary>
    public ushort Port => _core.Port;

    /// <summary>Binds <paramref name="port"/>, or a free one for 0; under the gate, since a free port is one no connection uses either.</summary>
    internal void Bind(ushort port, int backlog)
    {
        lock (_stack.Core.Gate)
        {
            _core = _stack.Core.Tcp.Listen(port, backlog, _observer);
        }
    }

    /// <summary>Any thread: the embedding's application took a connection handed over; its backlog place is free.</summary>
    public void TakeAccepted() => _core.TakeAccepted();

    /// <summary>
    /// Any thread: stops taking connections but keeps the port, so new SYNs get no answer at all (the peer retries, as
    /// after a loss: a balancer moves on, a restarted server may take the retry) until <see cref="Dispose"/>, after which
    /// they are answered with RST. Handshakes under way are reset when they complete. Connections handed over live on.
    /// </summary>
    public void StopAccepting() => _core.IsSilenced = true;

    /// <summary>Any thread: unbinds at once; new SYNs are answered with RST. Connections handed over live on.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _stack.Core.Tcp.Unlisten(_core);
        }
    }

    /// <summary>Engine thread: each connection that completed its handshake goes to the callback, which attaches to it or refuses it (RST).</summary>
    private sealed class Observer(VsoEndpointListener listener) : ITcpListenerObserver
    {
        void ITcpListenerObserver.OnConnectionReady(TcpListenerCore core)
        {
            while (core.TryDequeue(out var tcp))
            {
                var endpoint = new VsoConnectionEndpoint(listener._stack, tcp);
                Interlocked.Increment(ref core.AwaitingAccept);
                if (!listener._onAccepted(endpoint))
                {
                    core.TakeAccepted();
                    tcp.Abort();
                }
            }
        }
    }
}
