namespace Vso.Transport.Engine;

/// <summary>Work an application thread hands to the engine thread (a connection's pending operations, a bind).</summary>
internal interface IEngineWork
{
    void Execute();
}
