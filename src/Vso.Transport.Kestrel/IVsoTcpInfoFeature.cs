using Vso.Transport.Api;

namespace Vso.Transport.Kestrel;

/// <summary>
/// A connection feature of the Vso transport: the TCP state of the connection (srtt, cwnd, retransmissions...).
/// Read it from middleware with <c>context.Features.Get&lt;IVsoTcpInfoFeature&gt;()</c>.
/// </summary>
public interface IVsoTcpInfoFeature
{
    /// <summary>A snapshot taken without stopping the stack's engine (fields may be a turn of its loop apart).</summary>
    TcpConnectionInfo GetInfo();
}
