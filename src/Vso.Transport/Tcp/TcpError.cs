namespace Vso.Transport.Tcp;

/// <summary>Why a connection could not deliver.</summary>
public enum TcpError
{
    None,

    /// <summary>The peer sent RST.</summary>
    Reset,

    /// <summary>A segment went unacknowledged through every retransmission, or keepalive got no answer.</summary>
    TimedOut,

    /// <summary>The peer answered the SYN with RST, or an ICMP port or protocol unreachable: nothing listens there.</summary>
    Refused,

    /// <summary>The application aborted the connection (RST sent).</summary>
    Aborted,

    /// <summary>The stack shut down.</summary>
    StackStopped,

    /// <summary>The stack's receive memory limit was reached and this connection held the most (RST sent).</summary>
    MemoryLimit,

    /// <summary>
    /// An ICMP host unreachable (or administratively prohibited) ended a connect, or was the last soft error of a
    /// connection that then timed out (RFC 1122 §4.2.3.9).
    /// </summary>
    HostUnreachable,

    /// <summary>An ICMP network unreachable ended a connect, or was the last soft error before a timeout.</summary>
    NetworkUnreachable,
}

/// <summary>A connection failed; every pending send and receive completes with this.</summary>
public sealed class TcpConnectionException : IOException
{
    public TcpConnectionException(TcpError error, string message)
        : base(message) => Error = error;

    public TcpConnectionException()
        : this(TcpError.None, "TCP connection failed.")
    {
    }

    public TcpConnectionException(string message)
        : this(TcpError.None, message)
    {
    }

    public TcpConnectionException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal TcpConnectionException(TcpError error, string message, Exception innerException)
        : base(message, innerException) => Error = error;

    public TcpError Error { get; }
}
