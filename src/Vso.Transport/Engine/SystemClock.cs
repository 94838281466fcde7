using System.Diagnostics;

namespace Vso.Transport.Engine;

/// <summary>
/// Monotonic wall time from <see cref="Stopwatch"/>. Internal: the stack and the links use it when given no clock,
/// and <see cref="IClock.System"/> hands it to code that must share the stack's time base.
/// </summary>
internal sealed class SystemClock : IClock
{
    public static readonly SystemClock Instance = new();

    public long NowMicroseconds => (long)(Stopwatch.GetTimestamp() * (1_000_000.0 / Stopwatch.Frequency));
}
