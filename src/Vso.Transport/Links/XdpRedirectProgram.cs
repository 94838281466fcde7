using System.Runtime.InteropServices;
using Vso.Transport.Native;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// The stack's own XDP program, written as eBPF instructions and loaded with raw bpf(2) calls (no libbpf, no libxdp,
/// whose dispatcher these machines refuse): an XSKMAP of the interface's queues, the program, and a bpf_link that
/// attaches it to the interface. It redirects to the AF_XDP socket of the frame's receive queue only what belongs to
/// the stack, ARP whose target protocol address is the stack's and IPv4 addressed to the stack, and passes every other
/// frame to the kernel (XDP_PASS), so one interface carries the stack and the host's own traffic. A queue without a
/// socket in the map passes too (bpf_redirect_map's XDP_PASS default). The bpf_link detaches the program when its last
/// descriptor closes, so a process that dies leaves nothing attached.
/// </summary>
internal sealed unsafe class XdpRedirectProgram : IDisposable
{
    private const int XdpPass = 2;
    private const int BpfFuncRedirectMap = 51;

    private int _mapFd = -1;
    private int _programFd = -1;
    private int _linkFd = -1;

    private XdpRedirectProgram()
    {
    }

    /// <summary>The loaded program, for BPF_PROG_TEST_RUN.</summary>
    internal int ProgramFd => _programFd;

    /// <summary>True when attached in generic (SKB) mode, false for the driver's native XDP.</summary>
    public bool Generic { get; private set; }

    /// <summary>
    /// Creates the map with <paramref name="queues"/> entries and loads the program matching <paramref name="address"/>.
    /// Attach with <see cref="Attach"/>, after the socket is bound and put in the map with <see cref="SetSocket"/>.
    /// </summary>
    /// <remarks><paramref name="missAction"/>: what the redirect returns for a queue without a socket, XDP_PASS; tests set another to tell the two paths apart.</remarks>
    public static XdpRedirectProgram Load(Ipv4Address address, int queues, string name, int missAction = XdpPass)
    {
        var program = new XdpRedirectProgram();
        try
        {
            program._mapFd = CreateMap(queues, name);
            program._programFd = LoadProgram(Instructions(address, program._mapFd, missAction), name);
            return program;
        }
        catch
        {
            program.Dispose();
            throw;
        }
    }

    /// <summary>Puts the bound socket <paramref name="socketFd"/> in the map at <paramref name="queue"/>.</summary>
    public void SetSocket(int queue, int socketFd, string name)
    {
        var attr = stackalloc byte[LinuxNative.BpfAttrSize];
        new Span<byte>(attr, LinuxNative.BpfAttrSize).Clear();
        var key = (uint)queue;
        var value = (uint)socketFd;
        *(uint*)attr = (uint)_mapFd;
        *(ulong*)(attr + 8) = (ulong)&key;
        *(ulong*)(attr + 16) = (ulong)&value;
        if (LinuxNative.bpf(LinuxNative.BPF_MAP_UPDATE_ELEM, attr, LinuxNative.BpfAttrSize) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"putting the AF_XDP socket of '{name}' queue {queue} in the XSKMAP", "CAP_BPF");
        }
    }

    /// <summary>
    /// Attaches the program to <paramref name="ifIndex"/> through a bpf_link: native (driver) mode unless
    /// <paramref name="generic"/>. Returns the errno of a refusal the caller may answer by another mode (EOPNOTSUPP,
    /// EINVAL: the driver has no native XDP), 0 on success; throws for the rest.
    /// </summary>
    public int Attach(int ifIndex, bool generic, string name)
    {
        var attr = stackalloc byte[LinuxNative.BpfAttrSize];
        new Span<byte>(attr, LinuxNative.BpfAttrSize).Clear();
        *(uint*)attr = (uint)_programFd;
        *(uint*)(attr + 4) = (uint)ifIndex;
        *(uint*)(attr + 8) = LinuxNative.BPF_XDP;
        *(uint*)(attr + 12) = generic ? LinuxNative.XDP_FLAGS_SKB_MODE : LinuxNative.XDP_FLAGS_DRV_MODE;
        var fd = LinuxNative.bpf(LinuxNative.BPF_LINK_CREATE, attr, LinuxNative.BpfAttrSize);
        if (fd >= 0)
        {
            _linkFd = fd;
            Generic = generic;
            return 0;
        }

        var errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            Errno.EOPNOTSUPP or Errno.EINVAL when !generic => errno,
            Errno.EBUSY or Errno.EEXIST => throw new LinkException(
                $"Attaching the stack's XDP program to '{name}' failed: {Errno.Describe(errno)}: another XDP program is attached to it. " +
                $"See it with `ip link show {name}` (or `bpftool net`) and remove it (`ip link set {name} xdp off`) if nothing needs it.",
                errno),
            Errno.EPERM or Errno.EACCES => throw new LinkException(
                $"Attaching the stack's XDP program to '{name}' failed: {Errno.Describe(errno)}. This needs CAP_NET_ADMIN. {AfXdpLink.GrantHint}", errno),
            _ => throw LinkException.FromErrno(errno, $"attaching the stack's XDP program to '{name}' ({(generic ? "generic" : "native")} mode)"),
        };
    }

    public void Dispose()
    {
        Close(ref _linkFd);
        Close(ref _programFd);
        Close(ref _mapFd);
    }

    /// <summary>
    /// The program. Byte offsets: Ethernet type at 12; IPv4 destination at 14 + 16 = 30; ARP target protocol address at
    /// 14 + 24 = 38. Multi-byte fields are loaded as little-endian words, so the EtherTypes and the address are compared in
    /// their wire byte order read that way (IPv4 0x0800 reads 0x0008, ARP 0x0806 reads 0x0608). Packet reads are guarded
    /// by the data_end checks the verifier requires.
    /// </summary>
    internal static ulong[] Instructions(Ipv4Address address, int mapFd, int missAction = XdpPass)
    {
        Span<byte> bytes = stackalloc byte[4];
        address.Write(bytes);
        var wireAddress = (int)(bytes[0] | ((uint)bytes[1] << 8) | ((uint)bytes[2] << 16) | ((uint)bytes[3] << 24));

        const int pass = 22;
        const int ipv4 = 14;
        const int redirect = 16;
        var p = new ulong[24];
        p[0] = Insn(LdxW, 2, 1, 0, 0);                       // r2 = ctx->data
        p[1] = Insn(LdxW, 3, 1, 4, 0);                       // r3 = ctx->data_end
        p[2] = Insn(MovX, 4, 2, 0, 0);                       // r4 = r2
        p[3] = Insn(AddK, 4, 0, 0, 34);                      // r4 += Ethernet + IPv4 header
        p[4] = Insn(JgtX, 4, 3, Jump(4, pass), 0);           // short frame: pass
        p[5] = Insn(LdxH, 5, 2, 12, 0);                      // r5 = EtherType
        p[6] = Insn(JeqK, 5, 0, Jump(6, ipv4), 0x0008);      // IPv4
        p[7] = Insn(JneK, 5, 0, Jump(7, pass), 0x0608);      // not ARP: pass
        p[8] = Insn(MovX, 4, 2, 0, 0);
        p[9] = Insn(AddK, 4, 0, 0, 42);                      // Ethernet + ARP for IPv4
        p[10] = Insn(JgtX, 4, 3, Jump(10, pass), 0);
        p[11] = Insn(LdxW, 5, 2, 38, 0);                     // ARP target protocol address
        p[12] = Insn(Jne32K, 5, 0, Jump(12, pass), wireAddress);
        p[13] = Insn(Ja, 0, 0, Jump(13, redirect), 0);
        p[ipv4] = Insn(LdxW, 5, 2, 30, 0);                   // IPv4 destination
        p[15] = Insn(Jne32K, 5, 0, Jump(15, pass), wireAddress);
        p[redirect] = Insn(LdxW, 2, 1, 16, 0);               // r2 = ctx->rx_queue_index
        p[17] = Insn(LdDw, 1, PseudoMapFd, 0, mapFd);        // r1 = the XSKMAP
        p[18] = 0;
        p[19] = Insn(MovK, 3, 0, 0, missAction);             // no socket on this queue: pass
        p[20] = Insn(Call, 0, 0, 0, BpfFuncRedirectMap);
        p[21] = Insn(Exit, 0, 0, 0, 0);
        p[pass] = Insn(MovK, 0, 0, 0, XdpPass);
        p[23] = Insn(Exit, 0, 0, 0, 0);
        return p;
    }

    // Opcodes (linux/bpf.h, linux/bpf_common.h): class | size or op | source.
    private const byte LdxW = 0x61;    // BPF_LDX | BPF_MEM | BPF_W
    private const byte LdxH = 0x69;    // BPF_LDX | BPF_MEM | BPF_H
    private const byte LdDw = 0x18;    // BPF_LD | BPF_IMM | BPF_DW (two slots)
    private const byte MovX = 0xbf;    // BPF_ALU64 | BPF_MOV | BPF_X
    private const byte MovK = 0xb7;    // BPF_ALU64 | BPF_MOV | BPF_K
    private const byte AddK = 0x07;    // BPF_ALU64 | BPF_ADD | BPF_K
    private const byte JgtX = 0x2d;    // BPF_JMP | BPF_JGT | BPF_X
    private const byte JeqK = 0x15;    // BPF_JMP | BPF_JEQ | BPF_K
    private const byte JneK = 0x55;    // BPF_JMP | BPF_JNE | BPF_K
    private const byte Jne32K = 0x56;  // BPF_JMP32 | BPF_JNE | BPF_K: compares the low 32 bits, no sign extension
    private const byte Ja = 0x05;      // BPF_JMP | BPF_JA
    private const byte Call = 0x85;    // BPF_JMP | BPF_CALL
    private const byte Exit = 0x95;    // BPF_JMP | BPF_EXIT
    private const byte PseudoMapFd = 1; // BPF_PSEUDO_MAP_FD

    /// <summary>struct bpf_insn: code, dst_reg (low nibble) and src_reg (high nibble), s16 offset, s32 immediate.</summary>
    private static ulong Insn(byte code, int dst, int src, int offset, int immediate) =>
        code | ((ulong)(byte)(dst | (src << 4)) << 8) | ((ulong)(ushort)(short)offset << 16) | ((ulong)(uint)immediate << 32);

    /// <summary>A jump's offset counts from the instruction after it.</summary>
    private static int Jump(int from, int to) => to - from - 1;

    private static int CreateMap(int queues, string name)
    {
        var attr = stackalloc byte[LinuxNative.BpfAttrSize];
        new Span<byte>(attr, LinuxNative.BpfAttrSize).Clear();
        *(uint*)attr = LinuxNative.BPF_MAP_TYPE_XSKMAP;
        *(uint*)(attr + 4) = 4;              // key: queue index
        *(uint*)(attr + 8) = 4;              // value: socket fd
        *(uint*)(attr + 12) = (uint)queues;
        BpfProgram.WriteName(attr + 28, "vso_xsks");
        var fd = LinuxNative.bpf(LinuxNative.BPF_MAP_CREATE, attr, LinuxNative.BpfAttrSize);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno is Errno.EPERM or Errno.EACCES
                ? new LinkException(
                    $"Creating the XSKMAP for '{name}' failed: {Errno.Describe(errno)}. An XSKMAP needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN){Lacking()}. {AfXdpLink.GrantHint}",
                    errno)
                : LinkException.FromErrno(errno, $"creating the XSKMAP for '{name}'", "CAP_BPF");
        }

        return fd;
    }

    private static int LoadProgram(ulong[] instructions, string name) =>
        BpfProgram.Load(LinuxNative.BPF_PROG_TYPE_XDP, instructions, "vso_xdp", $"the stack's XDP program for '{name}'", errno => new LinkException(
            $"Loading the stack's XDP program for '{name}' failed: {Errno.Describe(errno)}. XDP programs need CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN){Lacking()}. {AfXdpLink.GrantHint}",
            errno));

    private static string Lacking() => Capabilities.Lacking(("CAP_BPF", LinuxNative.CAP_BPF), ("CAP_NET_ADMIN", LinuxNative.CAP_NET_ADMIN));

    private static void Close(ref int fd)
    {
        if (fd >= 0)
        {
            _ = LinuxNative.close(fd);
            fd = -1;
        }
    }
}
