using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;

namespace Vso.Transport.Api;

/// <summary>
/// The stack's own loss-recovery and congestion-control algorithms, for <see cref="Tcp.TcpSettings.LossRecovery"/> and
/// <see cref="Tcp.TcpSettings.CongestionControl"/>. A third-party algorithm implements <see cref="ILossRecovery"/> or
/// <see cref="ICongestionControl"/> itself, the documented plug-in points.
/// </summary>
public static class VsoAlgorithms
{
    /// <summary>The default: RACK-TLP (RFC 8985) when the handshake settled SACK, NewReno (RFC 6582) when it did not.</summary>
    public static ILossRecovery RackTlpRecovery(bool sackPermitted) => Tcp.TcpSettings.DefaultLossRecovery(sackPermitted);

    /// <summary>NewReno fast recovery (RFC 6582), with or without SACK.</summary>
    public static ILossRecovery NewRenoRecovery(bool sackPermitted) => new NewRenoRecovery();

    /// <summary>Retransmission on timeout only (RFC 6298), with or without SACK.</summary>
    public static ILossRecovery RtoRecovery(bool sackPermitted) => new RtoRecovery();

    /// <summary>CUBIC (RFC 9438).</summary>
    public static ICongestionControl CubicCongestionControl() => new CubicCongestionControl();

    /// <summary>NewReno congestion control (RFC 5681, RFC 6582).</summary>
    public static ICongestionControl NewRenoCongestionControl() => new NewRenoCongestionControl();
}
