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
    /// <summary>RACK-TLP (RFC 8985) with SACK, the default.</summary>
    public static ILossRecovery RackTlpRecovery() => new RackTlpRecovery();

    /// <summary>NewReno fast recovery (RFC 6582).</summary>
    public static ILossRecovery NewRenoRecovery() => new NewRenoRecovery();

    /// <summary>Retransmission on timeout only (RFC 6298).</summary>
    public static ILossRecovery RtoRecovery() => new RtoRecovery();

    /// <summary>CUBIC (RFC 9438).</summary>
    public static ICongestionControl CubicCongestionControl() => new CubicCongestionControl();

    /// <summary>NewReno congestion control (RFC 5681, RFC 6582).</summary>
    public static ICongestionControl NewRenoCongestionControl() => new NewRenoCongestionControl();
}
