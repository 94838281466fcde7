namespace Vso.Transport.Engine;

/// <summary>
/// The entries of the engine loop, each of which contains the exceptions that escape it (the tag of
/// <c>vso.engine.contained_exceptions</c>). An application continuation run inline counts under the entry
/// that completed it (an ACK or data from the link, a timer, posted work).
/// </summary>
internal enum EngineEntry
{
    /// <summary>Work an application posted (<see cref="IEngineWork"/>).</summary>
    PostedWork,

    /// <summary>Frames from the link and the processing of each segment.</summary>
    LinkReceive,

    /// <summary>A connection's due timers.</summary>
    Timers,

    /// <summary>A connection's output (segments built into the transmit batch, flushes when it fills).</summary>
    Output,

    /// <summary>The end-of-turn flush of the transmit batch to the link.</summary>
    LinkTransmit,

    /// <summary>The engine thread's own loop: start, waiting on the link.</summary>
    EngineThread,

    /// <summary>An application continuation run on the engine thread after a turn (<see cref="AfterTurnQueue"/>).</summary>
    Application,
}
