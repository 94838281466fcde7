using System.Threading.Channels;
using Vso.Transport.Engine;
using Vso.Transport.Tcp;

namespace Vso.Transport.Api;

/// <summary>A bound port: accepts connections whose handshake completed.</summary>
public sealed class VsoListener : IDisposable, IEngineWork, ITcpListenerObserver
{
    private readonly VsoStack _stack;
    private readonly Channel<VsoConnection> _accepted;
    private TcpListenerCore _core = null!;
    private int _disposed;

    internal VsoListener(VsoStack stack)
    {
        _stack = stack;
        _accepted = Channel.CreateUnbounded<VsoConnection>(new UnboundedChannelOptions
        {
            SingleWriter = true,
            AllowSynchronousContinuations = stack.Options.InlineContinuations,
        });
    }

    public ushort Port => _core.Port;

    internal void Bind(TcpListenerCore core) => _core = core;

    /// <summary>Waits for the next established connection. Throws <see cref="ChannelClosedException"/> once unbound.</summary>
    public async ValueTask<VsoConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        var connection = await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        _core.TakeAccepted();
        return connection;
    }

    /// <summary>A connection waiting to be accepted, if any (no waiting).</summary>
    public bool TryAccept(out VsoConnection connection)
    {
        if (_accepted.Reader.TryRead(out connection!))
        {
            _core.TakeAccepted();
            return true;
        }

        return false;
    }

    void ITcpListenerObserver.OnConnectionReady(TcpListenerCore listener)
    {
        while (listener.TryDequeue(out var tcp))
        {
            var connection = new VsoConnection(_stack, tcp);
            listener.AwaitingAccept++;
            if (!_accepted.Writer.TryWrite(connection))
            {
                listener.AwaitingAccept--;
                tcp.Abort();
            }
        }
    }

    /// <summary>Unbinds: no new connections; ones not yet accepted are reset. Accepted ones live on.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _stack.Core.Tcp.Unlisten(_core);
            _accepted.Writer.TryComplete();
            _stack.Core.Post(this);
        }
    }

    void IEngineWork.Execute()
    {
        while (_accepted.Reader.TryRead(out var pending))
        {
            pending.Abort();
        }
    }
}
