namespace Vso.Transport.Engine;

/// <summary>
/// Runs a stack's loop on a dedicated thread in real time: poll, then sleep until the next timer,
/// a frame, or work posted by the application, whichever comes first.
/// </summary>
internal sealed class EngineThread : IDisposable
{
    private readonly NetworkStack _stack;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _wake = new(false);
    private volatile bool _stopping;

    public EngineThread(NetworkStack stack, string name)
    {
        _stack = stack;
        stack.Wake = _wake.Set;
        _thread = new Thread(Run) { IsBackground = true, Name = name };
    }

    public void Start() => _thread.Start();

    private void Run()
    {
        _stack.Start();
        while (!_stopping)
        {
            _wake.Reset();
            if (_stack.Poll() || _stack.HasPendingWork)
            {
                continue;
            }

            var now = _stack.Clock.NowMicroseconds;
            var waitMicros = Math.Clamp(_stack.NextEventMicroseconds - now, 0, 1_000);
            if (waitMicros == 0)
            {
                continue;
            }

            // A link that can block (AF_PACKET, TAP) waits for frames; posted work still wakes us within the slice.
            if (!_stack.Link.WaitForFrames(TimeSpan.Zero))
            {
                _wake.Wait(TimeSpan.FromTicks(waitMicros * 10));
            }
        }
    }

    /// <summary>Runs <paramref name="action"/> on the engine thread after the loop ends.</summary>
    public void Stop()
    {
        _stopping = true;
        _wake.Set();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }
    }

    public void Dispose()
    {
        Stop();
        _wake.Dispose();
    }
}
