using System.Diagnostics;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The deadlines of DisposeAsync's waits for the peer's acknowledgments (<see cref="VsoOutputWriter.WhenDrained"/>): one
/// timer for the process, ticking only while a wait is registered, instead of a timer and a promise per disposed
/// connection (Task.WaitAsync). A deadline is met within one tick (<see cref="Tick"/>).
/// </summary>
internal static class AcknowledgeWaits
{
    /// <summary>How often waits are checked against their deadlines.</summary>
    public static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(100);

    private static readonly Lock Gate = new();
    private static readonly List<VsoOutputWriter> Waiting = [];
    private static Timer? _timer;
    private static bool _armed;

    /// <summary>Any thread: <paramref name="writer"/> waits; its deadline is its own (a writer listed twice is harmless).</summary>
    public static void Add(VsoOutputWriter writer)
    {
        lock (Gate)
        {
            Waiting.Add(writer);
            if (!_armed)
            {
                _armed = true;
                _timer ??= new Timer(static _ => OnTick(), null, Timeout.Infinite, Timeout.Infinite);
                _timer.Change(Tick, Tick);
            }
        }
    }

    private static void OnTick()
    {
        var now = Stopwatch.GetTimestamp();
        lock (Gate)
        {
            for (var i = Waiting.Count - 1; i >= 0; i--)
            {
                if (Waiting[i].ExpireDrainWait(now))
                {
                    Waiting[i] = Waiting[^1];
                    Waiting.RemoveAt(Waiting.Count - 1);
                }
            }

            if (Waiting.Count == 0 && _armed)
            {
                _armed = false;
                _timer!.Change(Timeout.Infinite, Timeout.Infinite);
            }
        }
    }
}
