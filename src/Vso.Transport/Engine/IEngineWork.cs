using Vso.Transport.Tcp;

namespace Vso.Transport.Engine;

/// <summary>Work an application thread hands to the engine thread (a connection's pending operations, a bind).</summary>
internal interface IEngineWork
{
    /// <summary>The connection this work belongs to, if any: an exception escaping <see cref="Execute"/> aborts it.</summary>
    TcpConnection? Connection => null;

    void Execute();
}
