using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Links;

/// <summary>
/// The socket filter of <see cref="AfPacketLink"/>, run over frames by the same rules as the kernel's classic BPF
/// interpreter: ARP passes; IPv4 passes only to the stack's address and, without a gateway, only from its subnet.
/// </summary>
public sealed class PacketFilterTests
{
    private static readonly Ipv4Address Stack = Ipv4Address.Parse("198.18.0.2");

    [Theory]
    [InlineData("198.18.0.1", "198.18.0.2", 24, true)]      // an on-link client
    [InlineData("203.0.113.9", "198.18.0.2", 24, false)]    // a spoofed off-subnet source, no gateway
    [InlineData("203.0.113.9", "198.18.0.2", 0, true)]      // the same with a gateway: the stack answers it
    [InlineData("198.18.0.1", "198.18.0.3", 24, false)]     // addressed to another host
    [InlineData("198.18.0.1", "255.255.255.255", 24, false)] // broadcast: the stack answers none
    public void IPv4_passes_only_to_the_stack_and_from_the_subnet_when_there_is_no_gateway(string source, string destination, int onLinkPrefix, bool expected)
    {
        var program = PacketFilter.Build(Stack, onLinkPrefix);
        Assert.Equal(expected, Accepts(program, Ipv4Frame(Ipv4Address.Parse(source), Ipv4Address.Parse(destination))));
    }

    [Fact]
    public void ARP_passes_and_other_ether_types_and_runts_do_not()
    {
        var program = PacketFilter.Build(Stack, 24);
        var arp = new byte[42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        Assert.True(Accepts(program, arp));

        var ipv6 = Ipv4Frame(Ipv4Address.Parse("198.18.0.1"), Stack);
        ipv6[12] = 0x86;
        ipv6[13] = 0xdd;
        Assert.False(Accepts(program, ipv6));

        // Too short to hold the destination address: the kernel's load fails, which drops the frame.
        Assert.False(Accepts(program, Ipv4Frame(Ipv4Address.Parse("198.18.0.1"), Stack).AsSpan(0, 20)));
    }

    /// <summary>
    /// Runs a program over a frame by the rules of the kernel's classic BPF interpreter (Documentation/networking/filter.rst),
    /// for the opcodes the filter uses: a load beyond the frame drops it, a return of 0 drops, anything else accepts.
    /// </summary>
    private static bool Accepts(ReadOnlySpan<PacketFilter.SockFilter> program, ReadOnlySpan<byte> frame)
    {
        uint a = 0;
        for (var pc = 0; pc < program.Length; pc++)
        {
            var op = program[pc];
            switch (op.Code)
            {
                case 0x28: // BPF_LD | BPF_H | BPF_ABS
                    if (op.K + 2 > frame.Length)
                    {
                        return false;
                    }

                    a = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(frame[(int)op.K..]);
                    break;
                case 0x20: // BPF_LD | BPF_W | BPF_ABS
                    if (op.K + 4 > frame.Length)
                    {
                        return false;
                    }

                    a = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(frame[(int)op.K..]);
                    break;
                case 0x54: // BPF_ALU | BPF_AND | BPF_K
                    a &= op.K;
                    break;
                case 0x15: // BPF_JMP | BPF_JEQ | BPF_K
                    pc += a == op.K ? op.JumpTrue : op.JumpFalse;
                    break;
                case 0x06: // BPF_RET | BPF_K
                    return op.K != 0;
                default:
                    throw new InvalidOperationException($"opcode 0x{op.Code:x} is not one the filter uses");
            }
        }

        return false;
    }

    private static byte[] Ipv4Frame(Ipv4Address source, Ipv4Address destination)
    {
        var frame = new byte[14 + 20 + 20];
        frame[12] = 0x08;
        frame[13] = 0x00;
        frame[14] = 0x45;
        source.Write(frame.AsSpan(14 + 12));
        destination.Write(frame.AsSpan(14 + 16));
        return frame;
    }
}
