namespace Vso.Transport.Tcp;

/// <summary>
/// Told on the engine thread when a connection's send side moved: new data left (its not-sent bytes fell), data or our FIN was
/// acknowledged. Set only while the application waits on it (held sends, a writable waiter, a lingering close), so a
/// connection nobody watches pays one null check per output.
/// </summary>
internal interface ITcpSendWatcher
{
    void OnSendProgress();
}
