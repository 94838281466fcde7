namespace Vso.Transport.Tcp;

/// <summary>The application side of a connection, told of its life by the engine thread.</summary>
internal interface ITcpConnectionObserver
{
    /// <summary>The handshake completed.</summary>
    void OnEstablished(TcpConnection connection);

    /// <summary>Bytes arrived in order, or the peer's FIN did (end of stream).</summary>
    void OnReadable(TcpConnection connection);

    /// <summary>The connection ended; <paramref name="error"/> is null after an orderly close.</summary>
    void OnClosed(TcpConnection connection, TcpConnectionException? error);
}
