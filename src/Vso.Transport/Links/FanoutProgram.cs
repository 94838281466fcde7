using Vso.Transport.Engine;

namespace Vso.Transport.Links;

/// <summary>
/// The classic BPF program of a PACKET_FANOUT_CBPF group (packet(7)): for each received frame it returns the index of the
/// socket, that is of the shard, that gets it; the kernel takes it modulo the group's size. An unfragmented IPv4 TCP
/// segment goes to <see cref="FlowHash.Hash"/> of its addresses and ports, computed here in the 32-bit ALU of classic BPF
/// (Documentation/networking/filter.rst); everything else (ARP, ICMP, fragments) returns 0, and the stack's
/// <see cref="ShardRouter"/> hands it on from shard 0. The kernel runs a fanout program with the frame's data at the
/// network header (unlike a SOCK_RAW socket filter, which sees the Ethernet header), so the program reads relative to
/// the network header (SKF_NET_OFF) and takes the EtherType from the packet's metadata (SKF_AD_PROTOCOL): it means the
/// same wherever the data begins.
/// </summary>
internal static class FanoutProgram
{
    /// <summary>SKF_AD_OFF + SKF_AD_PROTOCOL (linux/filter.h): the EtherType, host order.</summary>
    public const uint AncillaryProtocol = 0xfffff000;

    /// <summary>SKF_NET_OFF (linux/filter.h): offsets from the network header.</summary>
    public const uint NetworkOffset = 0xfff00000;

    private const ushort LoadWordAbsolute = 0x20;   // BPF_LD | BPF_W | BPF_ABS
    private const ushort LoadHalfAbsolute = 0x28;   // BPF_LD | BPF_H | BPF_ABS
    private const ushort LoadByteAbsolute = 0x30;   // BPF_LD | BPF_B | BPF_ABS
    private const ushort LoadHalfIndirect = 0x48;   // BPF_LD | BPF_H | BPF_IND
    private const ushort LoadMemory = 0x60;         // BPF_LD | BPF_MEM
    private const ushort LoadMemoryToX = 0x61;      // BPF_LDX | BPF_MEM
    private const ushort Store = 0x02;              // BPF_ST
    private const ushort MoveAToX = 0x07;           // BPF_MISC | BPF_TAX
    private const ushort AndConstant = 0x54;        // BPF_ALU | BPF_AND | BPF_K
    private const ushort ShiftLeftConstant = 0x64;  // BPF_ALU | BPF_LSH | BPF_K
    private const ushort ShiftRightConstant = 0x74; // BPF_ALU | BPF_RSH | BPF_K
    private const ushort MultiplyConstant = 0x24;   // BPF_ALU | BPF_MUL | BPF_K
    private const ushort XorX = 0xac;               // BPF_ALU | BPF_XOR | BPF_X
    private const ushort JumpIfEqual = 0x15;        // BPF_JMP | BPF_JEQ | BPF_K
    private const ushort JumpIfAnySet = 0x45;       // BPF_JMP | BPF_JSET | BPF_K
    private const ushort ReturnA = 0x16;            // BPF_RET | BPF_A
    private const ushort Return = 0x06;             // BPF_RET | BPF_K

    public static PacketFilter.SockFilter[] Build()
    {
        const int zero = 35; // the index of "return 0"
        return
        [
            /* 0 */ new(LoadWordAbsolute, 0, 0, AncillaryProtocol),
            /* 1 */ new(JumpIfEqual, 0, zero - 2, 0x0800),                 // not IPv4
            /* 2 */ new(LoadByteAbsolute, 0, 0, NetworkOffset + 9),
            /* 3 */ new(JumpIfEqual, 0, zero - 4, 6),                      // not TCP
            /* 4 */ new(LoadHalfAbsolute, 0, 0, NetworkOffset + 6),
            /* 5 */ new(JumpIfAnySet, zero - 6, 0, 0x1fff),                // a fragment after the first: no ports
            /* 6 */ new(LoadByteAbsolute, 0, 0, NetworkOffset),
            /* 7 */ new(AndConstant, 0, 0, 0xf),
            /* 8 */ new(ShiftLeftConstant, 0, 0, 2),
            /* 9 */ new(MoveAToX, 0, 0, 0),                                 // X = the IPv4 header's length
            /* 10 */ new(LoadHalfIndirect, 0, 0, NetworkOffset),           // source port
            /* 11 */ new(Store, 0, 0, 0),
            /* 12 */ new(LoadHalfIndirect, 0, 0, NetworkOffset + 2),       // destination port
            /* 13 */ new(LoadMemoryToX, 0, 0, 0),
            /* 14 */ new(XorX, 0, 0, 0),
            /* 15 */ new(Store, 0, 0, 0),                                  // M[0] = ports XORed
            /* 16 */ new(LoadWordAbsolute, 0, 0, NetworkOffset + 12),      // source address
            /* 17 */ new(MoveAToX, 0, 0, 0),
            /* 18 */ new(LoadWordAbsolute, 0, 0, NetworkOffset + 16),      // destination address
            /* 19 */ new(XorX, 0, 0, 0),
            /* 20 */ new(MoveAToX, 0, 0, 0),
            /* 21 */ new(LoadMemory, 0, 0, 0),
            /* 22 */ new(XorX, 0, 0, 0),                                   // the symmetric input of FlowHash.Hash
            /* 23 */ new(MoveAToX, 0, 0, 0),
            /* 24 */ new(ShiftRightConstant, 0, 0, 16),
            /* 25 */ new(XorX, 0, 0, 0),                                   // x ^= x >> 16
            /* 26 */ new(MultiplyConstant, 0, 0, FlowHash.Multiplier1),
            /* 27 */ new(MoveAToX, 0, 0, 0),
            /* 28 */ new(ShiftRightConstant, 0, 0, 15),
            /* 29 */ new(XorX, 0, 0, 0),                                   // x ^= x >> 15
            /* 30 */ new(MultiplyConstant, 0, 0, FlowHash.Multiplier2),
            /* 31 */ new(MoveAToX, 0, 0, 0),
            /* 32 */ new(ShiftRightConstant, 0, 0, 16),
            /* 33 */ new(XorX, 0, 0, 0),                                   // x ^= x >> 16
            /* 34 */ new(ReturnA, 0, 0, 0),
            /* 35 */ new(Return, 0, 0, 0),
        ];
    }
}
