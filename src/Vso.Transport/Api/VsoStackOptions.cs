using System.Net;
using Vso.Transport.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Api;

/// <summary>What a stack needs to come up on a link.</summary>
public sealed class VsoStackOptions
{
    /// <summary>The stack's IPv4 address.</summary>
    public IPAddress Address
    {
        get => Ipv4.ToIPAddress();
        set => Ipv4 = Ipv4Address.FromIPAddress(value);
    }

    internal Ipv4Address Ipv4 { get; set; }

    /// <summary>Prefix length of the local subnet (24 for 198.18.0.0/24).</summary>
    public int PrefixLength { get; set; } = 24;

    /// <summary>Next hop for addresses outside the subnet; null (default) for none.</summary>
    public IPAddress? Gateway
    {
        get => GatewayIpv4 == Ipv4Address.Any ? null : GatewayIpv4.ToIPAddress();
        set => GatewayIpv4 = value is null ? Ipv4Address.Any : Ipv4Address.FromIPAddress(value);
    }

    internal Ipv4Address GatewayIpv4 { get; set; }

    /// <summary>Default listen backlog (RFC 9293 §3.10.1): half-open plus not yet accepted connections.</summary>
    public int ListenBacklog { get; set; } = 512;

    public TcpSettings Tcp { get; set; } = new();

    /// <summary>
    /// Run application continuations inline on the engine thread. Virtual-time tests set it so that the
    /// application reacts within the same turn of the loop, deterministically. Off by default.
    /// </summary>
    public bool InlineContinuations { get; set; }

    /// <summary>
    /// Also mlock(2) the application memory of every send while it is pinned, so it is never swapped out while
    /// the link may read it. Subject to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK; a send whose memory
    /// cannot be locked fails with an <see cref="IOException"/> that says how to raise the limit. Off by default.
    /// </summary>
    public bool Mlock { get; set; }

    /// <summary>
    /// Engines (shards) the stack runs, each a thread with its own link socket, timers and connections; a connection lives
    /// on the engine its packets arrive on. Several need an AF_PACKET link (a socket per engine in a fanout group) or a TAP
    /// device (a queue per engine of a multi-queue device, flows steered to their engine's queue). Default 1.
    /// </summary>
    public int Engines { get; set; } = 1;

    /// <summary>
    /// Microseconds an idle engine keeps polling its link and work queue before it sleeps, while traffic is steady (the
    /// last idle spell ended within this time), as SO_BUSY_POLL: a request that arrives meanwhile is taken without a
    /// wake-up. 0 (default) sleeps at once; up to 1000.
    /// </summary>
    public int BusyPollMicroseconds { get; set; }

    /// <summary>
    /// While an engine sleeps, a thread that posts work to it (a flush, a close) runs the engine's turn itself instead of
    /// waking it, as a socket's send() runs the kernel's TCP on the calling thread: the response of a request leaves
    /// without a wake-up of the engine. A thread-pool thread runs it right after its current work item, so the flushes
    /// made meanwhile leave together; other threads run it at once. Off by default.
    /// </summary>
    public bool TurnOnCallingThread { get; set; }

    public void Validate()
    {
        if (BusyPollMicroseconds is < 0 or > 1000)
        {
            throw new ArgumentException($"BusyPollMicroseconds = '{BusyPollMicroseconds}' is invalid: use 0 (off) to 1000, such as 50.", nameof(BusyPollMicroseconds));
        }

        if (Engines is < 1 or > 64)
        {
            throw new ArgumentException($"Engines = '{Engines}' is invalid: use 1 to 64, such as the processor count.", nameof(Engines));
        }

        if (Ipv4 == Ipv4Address.Any)
        {
            throw new ArgumentException("Address = '0.0.0.0' is invalid: give the stack its own IPv4 address, such as 198.18.0.2.", nameof(Address));
        }

        if (PrefixLength is < 0 or > 32)
        {
            throw new ArgumentException($"PrefixLength = '{PrefixLength}' is invalid: use 0 to 32, such as 24.", nameof(PrefixLength));
        }

        if (ListenBacklog is < 1 or > 65535)
        {
            throw new ArgumentException($"ListenBacklog = '{ListenBacklog}' is invalid: use 1 to 65535.", nameof(ListenBacklog));
        }

        ArgumentNullException.ThrowIfNull(Tcp);
        Tcp.Validate();
    }
}
