using System.Diagnostics;

namespace Vso.Transport.Engine;

/// <summary>Monotonic wall time from <see cref="Stopwatch"/>.</summary>
public sealed class SystemClock : IClock
{
    public static readonly SystemClock Instance = new();

    public long NowMicroseconds => (long)(Stopwatch.GetTimestamp() * (1_000_000.0 / Stopwatch.Frequency));
}
