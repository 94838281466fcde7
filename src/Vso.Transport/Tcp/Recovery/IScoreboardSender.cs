namespace Vso.Transport.Tcp.Recovery;

/// <summary>
/// The connection as the built-in SACK algorithms see it: <see cref="ILossRecoverySender"/> plus the engine's own
/// scoreboard. Internal because the scoreboard is the engine's state, kept in step with every ACK and transmission;
/// a third-party algorithm reads what it needs from <see cref="AckEvent"/> and the public sender and keeps its own
/// state. The engine's sender implements it; <see cref="RackTlpRecovery"/> gets it by a cast in Attach.
/// </summary>
internal interface IScoreboardSender : ILossRecoverySender
{
    /// <summary>Per-segment state of what is in flight, maintained by the engine.</summary>
    SackScoreboard Scoreboard { get; }
}
