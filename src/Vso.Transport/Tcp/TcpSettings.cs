using Vso.Transport.Tcp.Congestion;
using Vso.Transport.Tcp.Recovery;

namespace Vso.Transport.Tcp;

/// <summary>TCP behaviour of a stack; every connection it opens or accepts starts from these.</summary>
public sealed class TcpSettings
{
    /// <summary>Receive buffer per connection in bytes; the largest window advertised. Default 1 MiB.</summary>
    public int ReceiveBufferSize { get; set; } = 1 << 20;

    /// <summary>Most out-of-order ranges held per connection (reassembly bound beside the buffer itself). Default 64.</summary>
    public int MaxOutOfOrderRanges { get; set; } = 64;

    /// <summary>
    /// Receive memory of the whole stack in bytes (pooled blocks holding received bytes, in order or not); 0 for no
    /// limit. Above three quarters of it windows stop opening and out-of-order data is dropped; at the limit new
    /// connections are refused and the largest holders reset. Default 1 GiB.
    /// </summary>
    public long MemoryLimit { get; set; } = 1L << 30;

    /// <summary>Negotiate window scaling (RFC 7323 §2). Default on.</summary>
    public bool WindowScaling { get; set; } = true;

    /// <summary>Negotiate timestamps (RFC 7323 §3): RTT measurement and PAWS. Default on.</summary>
    public bool Timestamps { get; set; } = true;

    /// <summary>Offer SACK-permitted (RFC 2018). Default on; SACK recovery plugs in behind <see cref="LossRecovery"/>.</summary>
    public bool Sack { get; set; } = true;

    /// <summary>Nagle's algorithm (RFC 9293 §3.7.4). Default on, as the RFC says; Kestrel turns it off.</summary>
    public bool Nagle { get; set; } = true;

    /// <summary>Longest an ACK may be delayed (RFC 9293 §3.8.6.3; at most 200 ms here). Default 40 ms; zero acknowledges every segment at once.</summary>
    public TimeSpan DelayedAck { get; set; } = TimeSpan.FromMilliseconds(40);

    /// <summary>Acknowledge at least every this many full-sized segments' worth of new bytes (RFC 9293 §3.8.6.3, RFC 5681 §4.2). Default 2.</summary>
    public int DelayedAckSegments { get; set; } = 2;

    /// <summary>Initial retransmission timeout (RFC 6298 §2.1). Default 1 s.</summary>
    public TimeSpan InitialRto { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Lower bound of the RTO. RFC 6298 says 1 s; Linux uses 200 ms, the default here.</summary>
    public TimeSpan MinRto { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Upper bound of the RTO (RFC 6298 §2.5 allows at least 60 s). Default 60 s.</summary>
    public TimeSpan MaxRto { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Retransmissions of one segment before the connection fails (RFC 9293 §3.8.3 R2). Default 15.</summary>
    public int MaxRetransmissions { get; set; } = 15;

    /// <summary>Retransmissions of a SYN before connect fails (R2 for SYN). Default 6.</summary>
    public int MaxSynRetransmissions { get; set; } = 6;

    /// <summary>TIME-WAIT duration, 2*MSL (RFC 9293 §3.4.2). Default 60 s.</summary>
    public TimeSpan TimeWait { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Send keepalive probes on idle connections (RFC 9293 §3.8.4). Default off.</summary>
    public bool Keepalive { get; set; }

    public TimeSpan KeepaliveIdle { get; set; } = TimeSpan.FromHours(2);

    public TimeSpan KeepaliveInterval { get; set; } = TimeSpan.FromSeconds(75);

    public int KeepaliveProbes { get; set; } = 9;

    /// <summary>How the host hands bytes to the sender. Default Pinned (no copy).</summary>
    public IdentifyMode IdentifyMode { get; set; } = IdentifyMode.Pinned;

    /// <summary>
    /// Loss detection and recovery: chooses the algorithm of a connection once, when the handshake has settled
    /// SACK, and is told whether both sides agreed on it (RFC 2018). Default <see cref="DefaultLossRecovery"/>.
    /// A selector that ignores its argument plugs in one algorithm for every connection.
    /// </summary>
    public Func<bool, ILossRecovery> LossRecovery { get; set; } = DefaultLossRecoverySelector;

    /// <summary>Congestion control. Default NewReno (RFC 5681).</summary>
    public Func<ICongestionControl> CongestionControl { get; set; } = NewRenoFactory;

    /// <summary>The default selector, one instance: a pooled connection that finds it may reuse its RACK-TLP parts.</summary>
    internal static readonly Func<bool, ILossRecovery> DefaultLossRecoverySelector = DefaultLossRecovery;

    /// <summary>The default factory, one instance: a pooled connection that finds it may reset its NewReno instead.</summary>
    internal static readonly Func<ICongestionControl> NewRenoFactory = static () => new NewRenoCongestionControl();

    private static readonly Func<bool, ILossRecovery> RackTlpAlgorithm = Api.VsoAlgorithms.RackTlpRecovery;
    private static readonly Func<ICongestionControl> NewRenoAlgorithm = Api.VsoAlgorithms.NewRenoCongestionControl;

    /// <summary>Whether <paramref name="selector"/> is the default (RACK-TLP with SACK), by instance or by method: a pooled connection may reuse its parts.</summary>
    internal static bool IsDefaultLossRecovery(Func<bool, ILossRecovery> selector) =>
        ReferenceEquals(selector, DefaultLossRecoverySelector) || selector.Equals(DefaultLossRecoverySelector) || selector.Equals(RackTlpAlgorithm);

    /// <summary>Whether <paramref name="factory"/> builds NewReno, by instance or by method: a pooled connection may reset its own.</summary>
    internal static bool IsNewReno(Func<ICongestionControl> factory) =>
        ReferenceEquals(factory, NewRenoFactory) || factory.Equals(NewRenoAlgorithm);

    /// <summary>Secret for ISNs (RFC 6528); random per stack when empty.</summary>
    public byte[] IsnKey { get; set; } = [];

    /// <summary>
    /// Half-open connections (SYN-RECEIVED) a listener holds, apart from its accept queue (the backlog). Beyond it a
    /// SYN gets a cookie or evicts the oldest entry, by <see cref="SynCookies"/>. Default 1024 (Linux's tcp_max_syn_backlog).
    /// </summary>
    public int MaxHalfOpen { get; set; } = 1024;

    /// <summary>SYN cookies (RFC 4987 §3.6): when a listener answers a SYN without keeping state. Default <see cref="SynCookieMode.Auto"/>.</summary>
    public SynCookieMode SynCookies { get; set; } = SynCookieMode.Auto;

    /// <summary>
    /// RACK-TLP (RFC 8985) when SACK was negotiated, which it needs (RFC 8985 §4: it detects losses from what the
    /// receiver SACKs); NewReno (RFC 6582) when the peer has no SACK.
    /// </summary>
    public static ILossRecovery DefaultLossRecovery(bool sackPermitted) => sackPermitted ? new RackTlpRecovery() : new NewRenoRecovery();

    /// <summary>Throws with the setting's name, its value and the fix when a value cannot work.</summary>
    public void Validate()
    {
        Require(MemoryLimit == 0 || MemoryLimit >= 4 * ReceiveBlockPool.BlockSize, nameof(MemoryLimit), MemoryLimit, $"use 0 (no limit) or at least {4 * ReceiveBlockPool.BlockSize} bytes");
        Require(MaxOutOfOrderRanges is >= 1 and <= 4096, nameof(MaxOutOfOrderRanges), MaxOutOfOrderRanges, "use 1 to 4096");
        Require(DelayedAck >= TimeSpan.Zero && DelayedAck <= TimeSpan.FromMilliseconds(200), nameof(DelayedAck), DelayedAck, "use 0 to 200 ms");
        Require(DelayedAckSegments is >= 1 and <= 2, nameof(DelayedAckSegments), DelayedAckSegments, "use 1 or 2 (RFC 5681 §4.2: at least every second full-sized segment)");
        Require(MinRto > TimeSpan.Zero, nameof(MinRto), MinRto, "use a positive time such as 200 ms");
        Require(MaxRto >= MinRto, nameof(MaxRto), MaxRto, $"use at least MinRto ({MinRto})");
        Require(InitialRto >= MinRto && InitialRto <= MaxRto, nameof(InitialRto), InitialRto, "use a time between MinRto and MaxRto");
        Require(MaxRetransmissions is >= 1 and <= 100, nameof(MaxRetransmissions), MaxRetransmissions, "use 1 to 100");
        Require(MaxSynRetransmissions is >= 0 and <= 100, nameof(MaxSynRetransmissions), MaxSynRetransmissions, "use 0 to 100");
        Require(TimeWait >= TimeSpan.Zero, nameof(TimeWait), TimeWait, "use a non-negative time (2*MSL, 60 s by default)");
        Require(Enum.IsDefined(IdentifyMode), nameof(IdentifyMode), IdentifyMode, "use Pinned or Copy");
        Require(LossRecovery is not null, nameof(LossRecovery), "null", "give a selector such as TcpSettings.DefaultLossRecovery");
        Require(CongestionControl is not null, nameof(CongestionControl), "null", "give a factory");
        Require(InvalidSegmentAckInterval >= TimeSpan.Zero, nameof(InvalidSegmentAckInterval), InvalidSegmentAckInterval, "use a non-negative time (500 ms by default, zero for no limit)");
        Require(ChallengeAckInterval >= TimeSpan.Zero, nameof(ChallengeAckInterval), ChallengeAckInterval, "use a non-negative time (500 ms by default, zero for no limit)");
        Require(ChallengeAckLimit >= 0, nameof(ChallengeAckLimit), ChallengeAckLimit, "use a non-negative count (1000 by default, zero for no limit)");
        Require(ResetsPerSecond >= 0, nameof(ResetsPerSecond), ResetsPerSecond, "use a non-negative rate (1000 by default, zero for no limit)");
        Require(ResetBurst >= 1, nameof(ResetBurst), ResetBurst, "use at least 1");
        Require(MaxHalfOpen is >= 1 and <= 1 << 20, nameof(MaxHalfOpen), MaxHalfOpen, "use 1 to 1048576");
        Require(Enum.IsDefined(SynCookies), nameof(SynCookies), SynCookies, "use Auto, Always or Never");
        Require(EphemeralPortFirst >= 1 && EphemeralPortLast >= EphemeralPortFirst, nameof(EphemeralPortFirst), $"{EphemeralPortFirst}-{EphemeralPortLast}", "give a non-empty range of ports from 1 to 65535");
        ValidateConnectionKeys();
    }

    /// <summary>The keys a connection may change for itself (VsoConnection's setters), checked alone.</summary>
    internal void ValidateConnectionKeys()
    {
        Require(ReceiveBufferSize is >= 2048 and <= (1 << 30), nameof(ReceiveBufferSize), ReceiveBufferSize, "use 2048 to 1073741824 bytes");
        Require(KeepaliveIdle > TimeSpan.Zero, nameof(KeepaliveIdle), KeepaliveIdle, "use a positive time");
        Require(KeepaliveInterval > TimeSpan.Zero, nameof(KeepaliveInterval), KeepaliveInterval, "use a positive time");
        Require(KeepaliveProbes >= 1, nameof(KeepaliveProbes), KeepaliveProbes, "use at least 1");
        Require(SendBufferSize >= 0, nameof(SendBufferSize), SendBufferSize, "use 0 (no limit) or a positive number of bytes");
        Require(UserTimeout >= TimeSpan.Zero, nameof(UserTimeout), UserTimeout, "use 0 (off) or a positive time");
        Require(Linger is null || Linger.Value >= TimeSpan.Zero, nameof(Linger), Linger?.ToString() ?? "null", "use null (close in the background), 0 (reset) or a positive time");
        Require(MssClamp == 0 || MssClamp is >= 88 and <= 65535, nameof(MssClamp), MssClamp, "use 0 (none) or 88 to 65535 bytes (88 is Linux's TCP_MIN_MSS)");
        Require(NotSentLowWatermark >= 0, nameof(NotSentLowWatermark), NotSentLowWatermark, "use 0 (off) or a positive number of bytes");
    }

    /// <summary>A connection's own copy, taken when it opens: later changes to the stack's settings do not reach it.</summary>
    internal TcpSettings Clone() => (TcpSettings)MemberwiseClone();

    /// <summary>First local port for active opens (RFC 6056, chosen at random within the range). Default 49152 (RFC 6335 §6).</summary>
    public ushort EphemeralPortFirst { get; set; } = 49152;

    /// <summary>Last local port for active opens. Default 65535.</summary>
    public ushort EphemeralPortLast { get; set; } = 65535;

    private static void Require(bool ok, string key, object value, string fix)
    {
        if (!ok)
        {
            throw new ArgumentException($"Tcp:{key} = '{value}' is invalid: {fix}.", key);
        }
    }

    /// <summary>
    /// Per connection, the least time between two duplicate ACKs sent for unacceptable segments that occupy no
    /// sequence space (pure ACKs, out of window or failing PAWS, RFC 9293 §3.10.7.4, RFC 7323 §5.3 R1) or carry a SYN.
    /// Two endpoints that disagree about a connection would otherwise ACK each other's ACKs forever. Linux's
    /// tcp_invalid_ratelimit, 500 ms by default; zero: no limit. Segments carrying data or FIN are always answered.
    /// </summary>
    public TimeSpan InvalidSegmentAckInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Per connection, the least time between two challenge ACKs (RFC 5961 §3.2, §4.2, §5.2; throttled by §7).
    /// Default 500 ms, Linux's per-socket limit; zero: no per-connection limit.
    /// </summary>
    public TimeSpan ChallengeAckInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Challenge ACKs the whole stack sends per second, drawn at random each second from [limit/2, limit*3/2) so that
    /// the count reveals nothing about other connections (RFC 5961 §7, CVE-2016-5696). Default 1000 (Linux
    /// tcp_challenge_ack_limit, 4.7 to 5.19); zero: no stack-wide limit.
    /// </summary>
    public int ChallengeAckLimit { get; set; } = 1000;

    /// <summary>
    /// RSTs per second the stack sends for segments that match no connection (RFC 9293 §3.10.7.1) or that a
    /// handshake refuses. Default 1000; zero: no limit.
    /// </summary>
    public int ResetsPerSecond { get; set; } = 1000;

    /// <summary>RSTs for unknown connections sent at once before <see cref="ResetsPerSecond"/> applies. Default 100.</summary>
    public int ResetBurst { get; set; } = 100;

    /// <summary>
    /// Per connection: bytes the application may have queued and not yet acknowledged before
    /// <c>VsoConnection.SendAsync</c> holds further sends back and <c>TrySend</c> refuses them (a send is queued whole
    /// once the queue is below the limit). 0: no limit. Default 4 MiB (Linux's largest tcp_wmem).
    /// </summary>
    public int SendBufferSize { get; set; } = 4 << 20;

    /// <summary>
    /// Per connection: the connection fails (<see cref="TcpError.TimedOut"/>) when sent data stays unacknowledged this
    /// long with no progress, zero-window probing included (RFC 5482, RFC 9293 §3.8.3 R2; Linux TCP_USER_TIMEOUT).
    /// 0: off (only <see cref="MaxRetransmissions"/> applies). Default 0.
    /// </summary>
    public TimeSpan UserTimeout { get; set; }

    /// <summary>
    /// Per connection, how <c>VsoConnection.CloseAsync</c> ends it (SO_LINGER): null (default) sends FIN after the queued
    /// data and completes when the connection ends; zero resets it (RST, queued data dropped); a positive time sends FIN
    /// and completes once the peer acknowledged everything, or resets the connection when the time passes first.
    /// </summary>
    public TimeSpan? Linger { get; set; }

    /// <summary>
    /// Per connection, the largest segment (TCP_MAXSEG): the MSS our SYN announces and the largest payload we send are
    /// at most this (less the options every segment carries). 0: the link's MTU decides. Default 0.
    /// </summary>
    public int MssClamp { get; set; }

    /// <summary>
    /// Per connection, in the spirit of TCP_NOTSENT_LOWAT: a connection is writable only while fewer than this many
    /// queued bytes have not been sent yet (besides being below <see cref="SendBufferSize"/>). 0: off. Default 0.
    /// </summary>
    public int NotSentLowWatermark { get; set; }
}
