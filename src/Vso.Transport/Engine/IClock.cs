namespace Vso.Transport.Engine;

/// <summary>
/// The engine's only source of time, in microseconds from an arbitrary origin. Every timer and RTT
/// sample reads it, so tests can run TCP in virtual time, deterministically.
/// </summary>
public interface IClock
{
    long NowMicroseconds { get; }
}
