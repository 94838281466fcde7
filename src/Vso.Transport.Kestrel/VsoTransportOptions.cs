using Vso.MemoryPinning;
using Vso.Transport.Tcp;

namespace Vso.Transport.Kestrel;

/// <summary>Which link carries the stack's frames.</summary>
public enum VsoBackend
{
    /// <summary>An AF_PACKET socket on an interface that has no kernel IPv4 address (a NIC or a veth end).</summary>
    AfPacket,

    /// <summary>A TAP device: the stack is the far end of a virtual wire whose near end is a kernel interface.</summary>
    Tap,

    /// <summary>
    /// An AF_XDP socket on one queue of an interface, with the stack's own XDP program steering to it only the stack's
    /// frames (ARP for its address, IPv4 to it): the kernel keeps the rest, so the interface may have kernel addresses too.
    /// </summary>
    AfXdp,
}

/// <summary>Congestion control algorithms (Tcp:CongestionControl).</summary>
public enum VsoCongestionControl
{
    /// <summary>RFC 5681 with appropriate byte counting (RFC 3465).</summary>
    NewReno,

    /// <summary>RFC 9438 with HyStart++ (RFC 9406).</summary>
    Cubic,
}

/// <summary>Loss recovery algorithms (Tcp:LossRecovery).</summary>
public enum VsoLossRecovery
{
    /// <summary>Retransmission timeouts only (RFC 6298 §5).</summary>
    Rto,

    /// <summary>Fast retransmit and NewReno recovery (RFC 5681 §3.2, RFC 6582).</summary>
    NewReno,

    /// <summary>RACK-TLP (RFC 8985) over the SACK scoreboard.</summary>
    RackTlp,
}

/// <summary>PROXY protocol versions a listener expects before the application's bytes (Vso:ProxyProtocol).</summary>
public enum VsoProxyProtocol
{
    /// <summary>No header: the connection's bytes are the application's from the first one.</summary>
    None,

    /// <summary>The text header of version 1 (HAProxy's proxy-protocol.txt §2.1).</summary>
    V1,

    /// <summary>The binary header of version 2 (§2.2), with its TLVs.</summary>
    V2,

    /// <summary>Either version, told apart by its signature.</summary>
    Any,
}

/// <summary>What new connections meet while a stopping server drains (Vso:DrainNewConnections).</summary>
public enum VsoDrainNewConnections
{
    /// <summary>The port is closed at once: SYNs are answered with RST (RFC 9293 §3.10.7.1), clients fail fast.</summary>
    Reset,

    /// <summary>The port stays taken but silent: SYNs get no answer, so the client (a balancer) retries, elsewhere or later.</summary>
    Drop,
}

/// <summary>
/// Options of the Vso Kestrel transport, bound from the "Vso" configuration section (appsettings.json,
/// environment variables such as <c>Vso__Backend</c>). Validated when the host starts; every message names
/// the key, the bad value and the fix. Defaults are listed in the README ("Kestrel transport").
/// </summary>
public sealed class VsoTransportOptions
{
    /// <summary>The configuration section bound by <c>UseVsoTransport()</c>.</summary>
    public const string SectionName = "Vso";

    /// <summary>AfPacket (default), Tap or AfXdp.</summary>
    public VsoBackend Backend { get; set; } = VsoBackend.AfPacket;

    /// <summary>The interface (AfPacket, AfXdp) or TAP device name (Tap). Required.</summary>
    public string Interface { get; set; } = "";

    /// <summary>The stack's address in CIDR form, such as 198.18.0.2/24. Required.</summary>
    public string Address { get; set; } = "";

    /// <summary>Next hop for destinations outside the subnet; empty for none (default).</summary>
    public string Gateway { get; set; } = "";

    /// <summary>The stack's MAC (Tap only; AfPacket and AfXdp use the interface's). Empty: random locally administered.</summary>
    public string MacAddress { get; set; } = "";

    /// <summary>MTU to set on the TAP device (Tap only; AfPacket and AfXdp use the interface's). Null: keep the device's.</summary>
    public int? Mtu { get; set; }

    /// <summary>Hand bytes to the link by pinned address (Pinned, default) or by one copy at send time (Copy).</summary>
    public IdentifyMode IdentifyMode { get; set; } = IdentifyMode.Pinned;

    public VsoTapOptions Tap { get; set; } = new();

    public VsoTcpOptions Tcp { get; set; } = new();

    /// <summary>
    /// The pinned block pool that Kestrel's buffers and every send come from (section Vso:Pinning): BlockSize (default
    /// 4096, Kestrel's own), SlabSize, MaxBytes (a bound on the pool; none by default) and Mlock (mlock(2) the slabs so
    /// they are never swapped; RLIMIT_MEMLOCK applies).
    /// </summary>
    public PinnedBlockPoolOptions Pinning { get; set; } = new();

    public VsoCaptureOptions Capture { get; set; } = new();

    public VsoAfPacketOptions AfPacket { get; set; } = new();

    /// <summary>Output backpressure: FlushAsync waits while at least this many flushed bytes are unsent or unacknowledged. Default 2 MiB.</summary>
    public long MaxWriteBufferSize { get; set; } = 2 << 20;

    /// <summary>Input backpressure: the stack stops reading (the TCP window closes) while the input pipe holds this many bytes. Default 1 MiB.</summary>
    public long MaxReadBufferSize { get; set; } = 1 << 20;

    /// <summary>
    /// How a connection ends when the application fails it: completing <c>Transport.Output</c> with an exception or
    /// calling <c>Abort()</c>. False (default, as Kestrel's Sockets transport): RST (RFC 9293 §3.10.5), data not yet
    /// acknowledged is discarded. True (as <c>SocketTransportOptions.FinOnError</c>): FIN after the data already flushed.
    /// </summary>
    public bool FinOnError { get; set; }

    /// <summary>
    /// When <c>ConnectionClosed</c> fires. True (default, as Kestrel's Sockets transport, whose receive loop completes
    /// <c>Transport.Input</c> and fires it on the peer's FIN): when the peer's FIN has been read, so that
    /// <c>RequestAborted</c> and HTTP/2's connection handling see the client leave. False: only when the whole TCP
    /// connection ends (both FINs exchanged, reset or failure); a half-closed client still gets its full response.
    /// </summary>
    public bool ConnectionClosedOnPeerFin { get; set; } = true;

    /// <summary>
    /// PROXY protocol (HAProxy's proxy-protocol.txt) on the listeners of <see cref="ProxyProtocolPorts"/>: None (default),
    /// V1, V2 or Any. Every connection must then start with a header from a trusted balancer; its addresses become the
    /// connection's RemoteEndPoint and LocalEndPoint before Kestrel sees a byte. A connection without a valid header, or
    /// from an untrusted address, is reset and counted.
    /// </summary>
    public VsoProxyProtocol ProxyProtocol { get; set; } = VsoProxyProtocol.None;

    /// <summary>
    /// The balancers allowed to send PROXY headers: IPv4 addresses or CIDR ranges separated by commas, such as
    /// <c>198.18.0.1, 10.0.0.0/8</c>. Required when <see cref="ProxyProtocol"/> is set (<c>0.0.0.0/0</c> trusts every source).
    /// </summary>
    public string ProxyProtocolTrustedAddresses { get; set; } = "";

    /// <summary>The ports whose listeners expect PROXY headers, separated by commas; empty (default) for every endpoint on the stack.</summary>
    public string ProxyProtocolPorts { get; set; } = "";

    /// <summary>How long a connection may take to send its PROXY header before it is reset (proxy-protocol.txt §2: at least 3 s). Default 5 s.</summary>
    public TimeSpan ProxyProtocolTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a stopping server lets its open connections finish their requests: from the moment Kestrel unbinds the
    /// listener (StopAsync), the connections still open after this are reset. Kestrel itself aborts what is left at
    /// HostOptions.ShutdownTimeout (30 s by default), so a longer drain needs a longer ShutdownTimeout. Default 30 s.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>What SYNs meet once the listener stops: Reset (default, RST as a closed port) or Drop (no answer, for a balancer to retry elsewhere).</summary>
    public VsoDrainNewConnections DrainNewConnections { get; set; } = VsoDrainNewConnections.Reset;

    /// <summary>
    /// Run the application's input continuations (Kestrel's request parsing, the app's handler up to its first await) on
    /// the engine thread, right after the turn the bytes arrived in, instead of the thread pool: no thread hop between a
    /// request and its response. HTTP/1.x requests after a connection's first answer only: the first request, and a
    /// connection that opens with the HTTP/2 preface or a TLS record, stay on the thread pool. A handler that blocks (a
    /// synchronous wait, a long computation) is relieved after about 10 ms: another thread runs the engine's loop until it
    /// returns, and that connection's requests run on the thread pool from then on (counted in
    /// <c>vso.engine.application_stalls</c>, logged). An exception it throws is contained like any on the engine thread.
    /// Default true; false keeps all application code on the thread pool.
    /// </summary>
    public bool ApplicationOnEngineThread { get; set; } = true;

    public VsoAfXdpOptions AfXdp { get; set; } = new();

    /// <summary>
    /// Engine threads (shards), each with its own link queue, timers, pools and connections; connections are spread over
    /// them by the hash of their addresses and ports, and Kestrel still sees one listener per endpoint. With AfPacket, one
    /// socket per engine in one PACKET_FANOUT group; with Tap, one queue per engine of a multi-queue device, with a steering
    /// program that puts each flow on its engine's queue; with AfXdp, one socket per engine, engine k on receive queue
    /// AfXdp:Queue + k (the interface needs that many queues). 1 to 64, or 0 (the default): one per processor but one (left
    /// to the thread pool) on AfPacket and on a multi-queue or created Tap device, no more than the interface has receive
    /// queues on AfXdp, 1 on a single-queue Tap device.
    /// </summary>
    public int Engines { get; set; }

    /// <summary>
    /// Microseconds an idle engine keeps polling before it sleeps while traffic is steady, as SO_BUSY_POLL: requests that
    /// keep coming are taken without a wake-up, at the price of a core kept busy meanwhile. 0 (default) to 1000.
    /// </summary>
    public int BusyPollMicroseconds { get; set; }

    /// <summary>
    /// Where the input pipe's reader continuations go when they leave the engine thread; null (the default) is the .NET
    /// thread pool. Not configurable: the round-trip probe sets it to compare schedulers (issue 12 item 2).
    /// </summary>
    internal System.IO.Pipelines.PipeScheduler? ReaderScheduler { get; set; }

    /// <summary>
    /// While the engine sleeps, the thread that flushes a response runs the engine's turn itself (under the engine's
    /// lock) instead of waking the engine thread, right after the work item that flushed, so that what several flushes
    /// wrote leaves together, as Kestrel's Sockets transport sends from its own loop once for several flushes.
    /// On by default: a wake-up costs a context switch each way, and on a busy machine the engine's wait to be scheduled.
    /// </summary>
    public bool TurnOnCallingThread { get; set; } = true;
}

/// <summary>AfXdp backend options (section Vso:AfXdp).</summary>
public sealed class VsoAfXdpOptions
{
    /// <summary>The receive queue the socket binds to (one socket, one queue). Default 0.</summary>
    public int Queue { get; set; }

    /// <summary>Auto (default: zero-copy and native XDP where the driver has them, each fallback logged), ZeroCopy, Copy or Skb (generic XDP).</summary>
    public Links.AfXdpMode Mode { get; set; } = Links.AfXdpMode.Auto;

    /// <summary>Entries of each AF_XDP ring, a power of two; the UMEM holds twice as many 4 KiB frames, pinned. Default 2048 (16 MiB).</summary>
    public int RingSize { get; set; } = 2048;

    /// <summary>
    /// Bytes of the pinned block pool laid out as one contiguous region that each socket registers as its UMEM
    /// (IdentifyMode Pinned): the sockets' own frames are rented from it (2 × RingSize × 4 KiB per queue) and the rest
    /// holds Kestrel's blocks, whose bytes the kernel then reads in place; blocks beyond it are copied. 0: a private UMEM
    /// per socket, every frame copied into it. A multiple of 4096. Default 67108864 (64 MiB).
    /// </summary>
    public long UmemBytes { get; set; } = 64L << 20;

    /// <summary>
    /// Receive queues served, one AF_XDP socket each, from Queue on. Default 1. With several Engines each engine serves its
    /// own share: 1 means one queue per engine; otherwise a multiple of Engines.
    /// </summary>
    public int Queues { get; set; } = 1;
}

/// <summary>AfPacket backend options (section Vso:AfPacket).</summary>
public sealed class VsoAfPacketOptions
{
    /// <summary>
    /// Hand the socket TCP super-segments of up to 64 KiB that the kernel cuts into MSS-sized frames (PACKET_VNET_HDR,
    /// generic segmentation offload). Default true.
    /// </summary>
    public bool SegmentationOffload { get; set; } = true;

    /// <summary>
    /// A classic BPF filter on the socket keeps from the stack the IPv4 frames it would only drop: those addressed elsewhere
    /// and, without a gateway, those from off-subnet sources, so a flood of spoofed sources costs no engine time. Default true.
    /// </summary>
    public bool KernelFilter { get; set; } = true;
}

/// <summary>Tap backend options (section Vso:Tap).</summary>
public sealed class VsoTapOptions
{
    /// <summary>Create the device if it does not exist (needs CAP_NET_ADMIN); it disappears when the server stops. Default true.</summary>
    public bool Create { get; set; } = true;

    /// <summary>An address in CIDR form for the kernel's side of the device, such as 198.18.0.1/24; empty for none (default).</summary>
    public string HostAddress { get; set; } = "";

    /// <summary>
    /// Segmentation offload on the device (IFF_VNET_HDR): the stack writes TCP super-segments of up to 64 KiB that the
    /// kernel takes whole, and reads the kernel's super-frames and frames with checksums left to finish. Default true.
    /// </summary>
    public bool SegmentationOffload { get; set; } = true;
}

/// <summary>TCP options (section Vso:Tcp). Defaults are those of <see cref="TcpSettings"/>.</summary>
public sealed class VsoTcpOptions
{
    public VsoCongestionControl CongestionControl { get; set; } = VsoCongestionControl.NewReno;

    public VsoLossRecovery LossRecovery { get; set; } = VsoLossRecovery.RackTlp;

    /// <summary>Selective acknowledgments (RFC 2018). Default true.</summary>
    public bool Sack { get; set; } = true;

    /// <summary>Timestamps (RFC 7323 §3). Default true.</summary>
    public bool Timestamps { get; set; } = true;

    /// <summary>Window scaling (RFC 7323 §2). Default true.</summary>
    public bool WindowScaling { get; set; } = true;

    /// <summary>Initial retransmission timeout (RFC 6298 §2.1). Default 1 s.</summary>
    public TimeSpan InitialRto { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Lower bound of the RTO. Default 200 ms.</summary>
    public TimeSpan MinRto { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Upper bound of the RTO. Default 60 s.</summary>
    public TimeSpan MaxRto { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Delayed ACK timer (RFC 5681 §4.2; 0 disables). Default 40 ms.</summary>
    public TimeSpan DelayedAck { get; set; } = TimeSpan.FromMilliseconds(40);

    /// <summary>Nagle's algorithm (RFC 896). Default false: Kestrel flushes whole responses, as its Sockets transport sets NoDelay.</summary>
    public bool Nagle { get; set; }

    /// <summary>Receive buffer (the advertised window's ceiling) per connection. Default 1 MiB.</summary>
    public int ReceiveBufferSize { get; set; } = 1 << 20;

    /// <summary>Receive memory of the whole stack in bytes (Vso:Tcp:MemoryLimit; 0 for no limit): windows stop opening at 3/4, new connections are refused and the largest holders reset at the limit. Default 1 GiB.</summary>
    public long MemoryLimit { get; set; } = 1L << 30;

    /// <summary>Listen backlog: established connections not yet accepted per port (the accept queue). Default 512.</summary>
    public int Backlog { get; set; } = 512;

    /// <summary>Half-open connections per listener (Vso:Tcp:MaxHalfOpen). Default 1024.</summary>
    public int MaxHalfOpen { get; set; } = 1024;

    /// <summary>SYN cookies (Vso:Tcp:SynCookies, RFC 4987 §3.6): Auto (when the half-open queue is full), Always or Never. Default Auto.</summary>
    public SynCookieMode SynCookies { get; set; } = SynCookieMode.Auto;
}

/// <summary>Capture options (section Vso:Capture).</summary>
public sealed class VsoCaptureOptions
{
    /// <summary>Write every frame the link sends and receives to this libpcap file; empty for none (default).</summary>
    public string PcapPath { get; set; } = "";
}
