using System.Runtime.InteropServices;
using Vso.Transport.Engine;
using Vso.Transport.Native;

namespace Vso.Transport.Links;

/// <summary>
/// The steering program of a multi-queue TAP device (TUNSETSTEERINGEBPF): for each frame the kernel sends into the
/// device, it names the queue, that is the engine shard, that reads it. Without it the kernel picks a queue by its own
/// flow hash (tun_automq_select_queue), which knows nothing of <see cref="FlowHash"/>, so most segments would reach a
/// shard that does not own their connection and be handed over. An unfragmented IPv4 TCP segment goes to
/// <see cref="FlowHash.Hash"/> of its addresses and ports modulo the queue count; everything else (ARP, ICMP, UDP,
/// later fragments) to queue 0, whose <see cref="ShardRouter"/> hands it on: the same function as
/// <see cref="FlowHash.QueueOf"/> and the AF_PACKET <see cref="FanoutProgram"/>.
/// <para>
/// The kernel (drivers/net/tun.c, tun_ebpf_select_queue) runs it as a BPF_PROG_TYPE_SOCKET_FILTER on the transmit path,
/// where the data begins at the Ethernet header, keeps the return value in a u16 and takes it modulo the number of
/// attached queues. The 16 bits are why the program returns the shard itself (hash mod N, N baked in) and not the hash:
/// the low 16 bits of the hash mod N differ from the hash mod N unless N is a power of two. BPF_PROG_TEST_RUN runs a
/// socket filter with the data at the network header instead, so the program reads only relative to the network header
/// (the legacy packet loads with SKF_NET_OFF, as <see cref="FanoutProgram"/> does, which also end the program with 0 on
/// a short frame) and takes the EtherType from <c>__sk_buff.protocol</c>: it means the same wherever the data begins.
/// </para>
/// <para>
/// The device holds its own reference to an attached program; the link that attached it detaches it when disposed, so
/// a persistent device is not left steering for a stack that is gone.
/// </para>
/// </summary>
internal sealed unsafe class TapSteeringProgram : IDisposable
{
    /// <summary>SKF_NET_OFF (linux/filter.h) as the signed immediate of a packet load: offsets from the network header.</summary>
    private const int NetworkOffset = unchecked((int)FanoutProgram.NetworkOffset);

    /// <summary>offsetof(struct __sk_buff, protocol): the EtherType in network byte order, zero-extended.</summary>
    private const short SkBuffProtocol = 16;

    private int _programFd;

    private TapSteeringProgram(int programFd) => _programFd = programFd;

    /// <summary>The loaded program, for BPF_PROG_TEST_RUN and for attaching.</summary>
    internal int ProgramFd => _programFd;

    /// <summary>Loads the program for a device of <paramref name="queueCount"/> queues; <paramref name="name"/> names the device in errors.</summary>
    public static TapSteeringProgram Load(int queueCount, string name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(queueCount, 1);
        var fd = BpfProgram.Load(LinuxNative.BPF_PROG_TYPE_SOCKET_FILTER, Instructions(queueCount), "vso_tap_steer", $"the TAP steering program for '{name}'", errno => new LinkException(
            $"Loading the TAP steering program for '{name}' failed: {Errno.Describe(errno)}. Several engines on a TAP device need CAP_BPF " +
            $"(or CAP_SYS_ADMIN){Capabilities.Lacking(("CAP_BPF", LinuxNative.CAP_BPF))}: grant it (`sudo setcap cap_net_admin,cap_bpf+ep <program>`) or use one engine (Engines = 1).",
            errno));
        return new TapSteeringProgram(fd);
    }

    /// <summary>Attaches the program to the device of the TAP queue <paramref name="tapFd"/> (any queue: the program is the device's).</summary>
    public void Attach(int tapFd, string name)
    {
        var fd = _programFd;
        if (LinuxNative.ioctl(tapFd, LinuxNative.TUNSETSTEERINGEBPF, &fd) < 0)
        {
            throw LinkException.FromErrno(Marshal.GetLastPInvokeError(), $"TUNSETSTEERINGEBPF on '{name}' (steering the flows to the engines' queues)");
        }
    }

    /// <summary>Detaches whatever steering program the device has: its queues go back to the kernel's own flow hash.</summary>
    public static bool Detach(int tapFd)
    {
        var none = -1;
        return LinuxNative.ioctl(tapFd, LinuxNative.TUNSETSTEERINGEBPF, &none) >= 0;
    }

    public void Dispose()
    {
        if (_programFd >= 0)
        {
            _ = LinuxNative.close(_programFd);
            _programFd = -1;
        }
    }

    /// <summary>
    /// The program: r6 holds the context, as the packet loads require; they leave their value in r0, in host order, and
    /// scratch r1 to r5, so the IPv4 header length lives in r7 and the XORed ports and addresses in r8. The hash is
    /// computed with the 32-bit ALU, so that multiplications wrap as <see cref="FlowHash.Hash"/>'s do.
    /// </summary>
    internal static ulong[] Instructions(int queueCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(queueCount, 1);

        // ETH_P_IP as __sk_buff.protocol holds it: the big-endian 0x0800 read as a host integer.
        int ipv4 = BitConverter.IsLittleEndian ? 0x0008 : 0x0800;
        const int zero = 32;
        var p = new ulong[34];
        p[0] = Insn(Mov64X, 6, 1, 0, 0);                               // r6 = ctx
        p[1] = Insn(LdxW, 0, 6, SkBuffProtocol, 0);                    // r0 = skb->protocol
        p[2] = Insn(JneK, 0, 0, Jump(2, zero), ipv4);                  // not IPv4
        p[3] = Insn(LdAbsB, 0, 0, 0, NetworkOffset + 9);
        p[4] = Insn(JneK, 0, 0, Jump(4, zero), 6);                     // not TCP
        p[5] = Insn(LdAbsH, 0, 0, 0, NetworkOffset + 6);
        p[6] = Insn(JsetK, 0, 0, Jump(6, zero), 0x1fff);               // a fragment after the first: no ports
        p[7] = Insn(LdAbsB, 0, 0, 0, NetworkOffset);
        p[8] = Insn(And32K, 0, 0, 0, 0xf);
        p[9] = Insn(Lsh32K, 0, 0, 0, 2);
        p[10] = Insn(Mov64X, 7, 0, 0, 0);                              // r7 = the IPv4 header's length
        p[11] = Insn(LdIndH, 0, 7, 0, NetworkOffset);                  // source port
        p[12] = Insn(Mov64X, 8, 0, 0, 0);
        p[13] = Insn(LdIndH, 0, 7, 0, NetworkOffset + 2);              // destination port
        p[14] = Insn(Xor32X, 8, 0, 0, 0);                              // r8 = ports XORed
        p[15] = Insn(LdAbsW, 0, 0, 0, NetworkOffset + 12);             // source address
        p[16] = Insn(Xor32X, 8, 0, 0, 0);
        p[17] = Insn(LdAbsW, 0, 0, 0, NetworkOffset + 16);             // destination address
        p[18] = Insn(Xor32X, 0, 8, 0, 0);                              // the symmetric input of FlowHash.Hash
        p[19] = Insn(Mov32X, 1, 0, 0, 0);
        p[20] = Insn(Rsh32K, 1, 0, 0, 16);
        p[21] = Insn(Xor32X, 0, 1, 0, 0);                              // x ^= x >> 16
        p[22] = Insn(Mul32K, 0, 0, 0, unchecked((int)FlowHash.Multiplier1));
        p[23] = Insn(Mov32X, 1, 0, 0, 0);
        p[24] = Insn(Rsh32K, 1, 0, 0, 15);
        p[25] = Insn(Xor32X, 0, 1, 0, 0);                              // x ^= x >> 15
        p[26] = Insn(Mul32K, 0, 0, 0, unchecked((int)FlowHash.Multiplier2));
        p[27] = Insn(Mov32X, 1, 0, 0, 0);
        p[28] = Insn(Rsh32K, 1, 0, 0, 16);
        p[29] = Insn(Xor32X, 0, 1, 0, 0);                              // x ^= x >> 16
        p[30] = Insn(Mod32K, 0, 0, 0, queueCount);                     // the shard, below 2^16 (see the summary)
        p[31] = Insn(Exit, 0, 0, 0, 0);
        p[zero] = Insn(Mov64K, 0, 0, 0, 0);
        p[33] = Insn(Exit, 0, 0, 0, 0);
        return p;
    }

    // Opcodes (linux/bpf.h, linux/bpf_common.h): class | size or op | source.
    private const byte LdxW = 0x61;    // BPF_LDX | BPF_MEM | BPF_W
    private const byte LdAbsW = 0x20;  // BPF_LD | BPF_ABS | BPF_W
    private const byte LdAbsH = 0x28;  // BPF_LD | BPF_ABS | BPF_H
    private const byte LdAbsB = 0x30;  // BPF_LD | BPF_ABS | BPF_B
    private const byte LdIndH = 0x48;  // BPF_LD | BPF_IND | BPF_H: the index register is src
    private const byte Mov64X = 0xbf;  // BPF_ALU64 | BPF_MOV | BPF_X
    private const byte Mov64K = 0xb7;  // BPF_ALU64 | BPF_MOV | BPF_K
    private const byte Mov32X = 0xbc;  // BPF_ALU | BPF_MOV | BPF_X
    private const byte And32K = 0x54;  // BPF_ALU | BPF_AND | BPF_K
    private const byte Lsh32K = 0x64;  // BPF_ALU | BPF_LSH | BPF_K
    private const byte Rsh32K = 0x74;  // BPF_ALU | BPF_RSH | BPF_K
    private const byte Mul32K = 0x24;  // BPF_ALU | BPF_MUL | BPF_K
    private const byte Mod32K = 0x94;  // BPF_ALU | BPF_MOD | BPF_K: unsigned
    private const byte Xor32X = 0xac;  // BPF_ALU | BPF_XOR | BPF_X
    private const byte JneK = 0x55;    // BPF_JMP | BPF_JNE | BPF_K
    private const byte JsetK = 0x45;   // BPF_JMP | BPF_JSET | BPF_K
    private const byte Exit = 0x95;    // BPF_JMP | BPF_EXIT

    /// <summary>struct bpf_insn: code, dst_reg (low nibble) and src_reg (high nibble), s16 offset, s32 immediate.</summary>
    private static ulong Insn(byte code, int dst, int src, short offset, int immediate) =>
        code | ((ulong)(byte)(dst | (src << 4)) << 8) | ((ulong)(ushort)offset << 16) | ((ulong)(uint)immediate << 32);

    /// <summary>A jump's offset counts from the instruction after it.</summary>
    private static short Jump(int from, int to) => (short)(to - from - 1);
}
