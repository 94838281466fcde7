namespace Vso.Transport.Engine;

/// <summary>Time that moves only when a test moves it.</summary>
internal sealed class VirtualClock : IClock
{
    public VirtualClock(long startMicroseconds = 1_000_000) => NowMicroseconds = startMicroseconds;

    public long NowMicroseconds { get; private set; }

    public void AdvanceTo(long microseconds)
    {
        if (microseconds > NowMicroseconds)
        {
            NowMicroseconds = microseconds;
        }
    }

    public void Advance(TimeSpan by) => AdvanceTo(NowMicroseconds + (long)(by.Ticks / 10));
}
