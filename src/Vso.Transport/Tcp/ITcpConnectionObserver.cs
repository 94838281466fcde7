namespace Vso.Transport.Tcp;

/// <summary>The application side of a connection, told of its life by the engine thread.</summary>
internal interface ITcpConnectionObserver
{
    /// <summary>The handshake completed.</summary>
    void OnEstablished(TcpConnection connection);

    /// <summary>Bytes arrived in order, or the peer's FIN did (end of stream).</summary>
    /// <summary>
    /// In-order bytes with nothing ahead of them in the receive buffer: the observer may take them straight into the
    /// application's memory (the one user-space copy) and return true; false leaves them to the receive buffer.
    /// </summary>
    bool TryTakeInOrder(TcpConnection connection, ReadOnlySpan<byte> payload) => false;

    void OnReadable(TcpConnection connection);

    /// <summary>The connection ended; <paramref name="error"/> is null after an orderly close.</summary>
    void OnClosed(TcpConnection connection, TcpConnectionException? error);
}
