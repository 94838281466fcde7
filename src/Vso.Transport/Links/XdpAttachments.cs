using Microsoft.Extensions.Logging;
using Vso.Transport.Native;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// The stack's XDP program per interface, shared by the links that serve its queues: an interface takes one XDP
/// program, so the first link (or the first shard's link) loads and attaches it, later ones put their sockets in its
/// XSKMAP, and the last one to close detaches it. Thread-safe.
/// </summary>
internal static class XdpAttachments
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<int, Entry> Attached = [];

    /// <summary>The program attached to <paramref name="ifIndex"/>, loaded and attached if none is; release it with <see cref="Release"/>.</summary>
    public static XdpRedirectProgram Acquire(int ifIndex, string name, Ipv4Address address, int queues, AfXdpMode mode, ILogger log)
    {
        lock (Gate)
        {
            if (Attached.TryGetValue(ifIndex, out var entry))
            {
                if (entry.Address != address)
                {
                    throw new LinkException(
                        $"The stack's XDP program on '{name}' already steers {entry.Address} to this process's AF_XDP sockets; a second stack address ({address}) on the same interface is not supported.",
                        Errno.EBUSY);
                }

                entry.References++;
                return entry.Program;
            }

            var program = XdpRedirectProgram.Load(address, queues, name);
            try
            {
                Attach(program, ifIndex, name, mode, log);
            }
            catch
            {
                program.Dispose();
                throw;
            }

            Attached[ifIndex] = new Entry(program, address) { References = 1 };
            return program;
        }
    }

    public static void Release(int ifIndex, XdpRedirectProgram program)
    {
        lock (Gate)
        {
            if (Attached.TryGetValue(ifIndex, out var entry) && ReferenceEquals(entry.Program, program))
            {
                if (--entry.References > 0)
                {
                    return;
                }

                Attached.Remove(ifIndex);
            }

            program.Dispose();
        }
    }

    private static void Attach(XdpRedirectProgram program, int ifIndex, string name, AfXdpMode mode, ILogger log)
    {
        var errno = program.Attach(ifIndex, generic: mode == AfXdpMode.Skb, name);
        if (errno == 0)
        {
            return;
        }

        if (mode != AfXdpMode.Auto)
        {
            throw new LinkException(
                $"Attaching the stack's XDP program to '{name}' in native mode failed: {Errno.Describe(errno)}: its driver has no native XDP. " +
                "Set Vso:AfXdp:Mode = Skb (generic XDP) or Auto, or use Vso:Backend = AfPacket.",
                errno);
        }

        log.AfXdpFallback(name, $"the driver has no native XDP ({Errno.Describe(errno)})", "generic (SKB) XDP");
        _ = program.Attach(ifIndex, generic: true, name);
    }

    private sealed class Entry(XdpRedirectProgram program, Ipv4Address address)
    {
        public XdpRedirectProgram Program { get; } = program;

        public Ipv4Address Address { get; } = address;

        public int References { get; set; }
    }
}
