using Vso.Transport.Tcp;

namespace Vso.Transport.Api;

/// <summary>
/// The embedding side of a <see cref="VsoConnectionEndpoint"/>, told of the connection's life. Every call comes on the
/// engine thread, which is the only thread that may use the endpoint's engine-thread members.
/// </summary>
public interface IVsoEndpointObserver
{
    /// <summary>The turn asked for with <see cref="VsoConnectionEndpoint.RequestTurn"/>: apply the operations queued for the engine.</summary>
    void OnTurn();

    /// <summary>The handshake completed.</summary>
    void OnEstablished();

    /// <summary>Bytes arrived in order, or the peer's FIN did (end of stream).</summary>
    void OnReadable();

    /// <summary>
    /// Bytes that arrived in order with nothing unread before them: copy them into the application's memory now and return
    /// true, and they never enter the receive buffer (one copy from frame to application); return false to have them
    /// buffered and announced by <see cref="OnReadable"/>. A taker must say so with <see cref="OnReadable"/>'s work after
    /// the segment: the engine calls OnReadable as for buffered bytes.
    /// </summary>
    bool TryTakeInOrder(ReadOnlySpan<byte> payload) => false;

    /// <summary>The connection ended; <paramref name="error"/> is null after an orderly close.</summary>
    void OnClosed(TcpConnectionException? error);
}
