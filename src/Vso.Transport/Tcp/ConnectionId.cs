using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>The four-tuple that names a connection (RFC 9293 §3.3.1), seen from our side.</summary>
internal readonly record struct ConnectionId(Ipv4Address LocalAddress, ushort LocalPort, Ipv4Address RemoteAddress, ushort RemotePort)
{
    public override string ToString() => $"{LocalAddress}:{LocalPort}<->{RemoteAddress}:{RemotePort}";
}
