namespace Vso.Transport.Tcp;

/// <summary>
/// Tells <see cref="EphemeralPortAllocator"/> whether a candidate connection identifier is taken (a live
/// connection, a TIME-WAIT, a listener on that local port). A struct implementation is called without
/// boxing or allocation; a class (the connection table itself) works as well.
/// </summary>
internal interface IPortInUseProbe
{
    bool IsInUse(in ConnectionId candidate);
}
