namespace Vso.Transport.Engine;

/// <summary>
/// The engine's only source of time, in microseconds from an arbitrary origin. Every timer and RTT
/// sample reads it, so tests can run TCP in virtual time, deterministically.
/// </summary>
internal interface IClock
{
    /// <summary>
    /// Monotonic wall time (<see cref="System.Diagnostics.Stopwatch"/>), the clock of a stack given none: pass it to
    /// what must run on the same time base in real time, such as a <see cref="Links.SimulatedLink"/> pair.
    /// </summary>
    static IClock System => SystemClock.Instance;

    long NowMicroseconds { get; }
}
