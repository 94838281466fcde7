namespace Vso.Transport.Tcp;

/// <summary>When a listener answers a SYN with a SYN cookie instead of a half-open entry (RFC 4987 §3.6).</summary>
public enum SynCookieMode
{
    /// <summary>Only while the listener's half-open queue is full (<see cref="TcpSettings.MaxHalfOpen"/>), as Linux's tcp_syncookies = 1.</summary>
    Auto,

    /// <summary>For every SYN: no half-open state at all (Linux's tcp_syncookies = 2).</summary>
    Always,

    /// <summary>Never: a full half-open queue drops its oldest entry to admit the new SYN (RFC 4987 §3.4).</summary>
    Never,
}
