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

    /// <summary>The connection ended; <paramref name="error"/> is null after an orderly close.</summary>
    void OnClosed(TcpConnectionException? error);
}
