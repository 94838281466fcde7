using System.Buffers.Binary;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Links;

/// <summary>
/// The PACKET_FANOUT_CBPF program of a sharded AF_PACKET stack, run by the rules of the kernel's classic BPF interpreter
/// as the fanout runs it (data at the network header; SKF_NET_OFF and SKF_AD_PROTOCOL loads), against the stack's own
/// <see cref="FlowHash"/>: a segment must reach the shard that owns its connection.
/// </summary>
public sealed class FanoutProgramTests
{
    [Fact]
    public void The_program_computes_the_stacks_flow_hash_for_random_TCP_flows()
    {
        var program = FanoutProgram.Build();
        var random = new Random(13);
        for (var i = 0; i < 10_000; i++)
        {
            var source = (uint)random.NextInt64(0, 1L << 32);
            var destination = (uint)random.NextInt64(0, 1L << 32);
            var sourcePort = (ushort)random.Next(1, 65536);
            var destinationPort = (ushort)random.Next(1, 65536);
            var options = random.Next(0, 11) * 4; // IPv4 options shift the ports: the program must read the header length
            var frame = TcpFrame(source, destination, sourcePort, destinationPort, options);
            var expected = FlowHash.Hash(source, sourcePort, destination, destinationPort);
            Assert.Equal(expected, Run(program, frame));
            foreach (var shards in (int[])[2, 3, 4, 64])
            {
                Assert.Equal(FlowHash.QueueOf(frame, shards), (int)(Run(program, frame) % (uint)shards));
                Assert.Equal(FrameRoute.Shard, FlowHash.Route(frame, shards, out var shard));
                Assert.Equal(FlowHash.QueueOf(frame, shards), shard);
            }
        }
    }

    [Fact]
    public void ARP_ICMP_UDP_and_later_fragments_go_to_shard_0()
    {
        var program = FanoutProgram.Build();
        var arp = new byte[42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        Assert.Equal(0u, Run(program, arp));

        var icmp = TcpFrame(0xc6120001, 0xc6120002, 1000, 80, 0);
        icmp[14 + 9] = 1;
        Assert.Equal(0u, Run(program, icmp));
        var udp = TcpFrame(0xc6120001, 0xc6120002, 1000, 80, 0);
        udp[14 + 9] = 17;
        Assert.Equal(0u, Run(program, udp));

        var fragment = TcpFrame(0xc6120001, 0xc6120002, 1000, 80, 0);
        BinaryPrimitives.WriteUInt16BigEndian(fragment.AsSpan(14 + 6), 185); // offset 1480 bytes
        Assert.Equal(0u, Run(program, fragment));
        Assert.Equal(0, FlowHash.QueueOf(fragment, 4));

        // A first fragment has its ports: it hashes like the rest of its flow.
        var first = TcpFrame(0xc6120001, 0xc6120002, 1000, 80, 0);
        BinaryPrimitives.WriteUInt16BigEndian(first.AsSpan(14 + 6), 0x2000); // MF
        Assert.Equal(FlowHash.Hash(0xc6120001, 1000, 0xc6120002, 80), Run(program, first));

        // Truncated before the ports: the kernel's failed load returns 0.
        Assert.Equal(0u, Run(program, TcpFrame(0xc6120001, 0xc6120002, 1000, 80, 0).AsSpan(0, 14 + 20 + 2)));
    }

    [Fact]
    public void The_hash_is_symmetric()
    {
        var random = new Random(7);
        for (var i = 0; i < 1000; i++)
        {
            var a = (uint)random.NextInt64(0, 1L << 32);
            var b = (uint)random.NextInt64(0, 1L << 32);
            var pa = (ushort)random.Next(65536);
            var pb = (ushort)random.Next(65536);
            Assert.Equal(FlowHash.Hash(a, pa, b, pb), FlowHash.Hash(b, pb, a, pa));
        }
    }

    internal static byte[] TcpFrame(uint source, uint destination, ushort sourcePort, ushort destinationPort, int optionBytes)
    {
        var ipHeader = 20 + optionBytes;
        var frame = new byte[14 + ipHeader + 20];
        frame[12] = 0x08;
        frame[13] = 0x00;
        var ip = frame.AsSpan(14);
        ip[0] = (byte)(0x40 | (ipHeader / 4));
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(ipHeader + 20));
        ip[8] = 64;
        ip[9] = 6;
        BinaryPrimitives.WriteUInt32BigEndian(ip[12..], source);
        BinaryPrimitives.WriteUInt32BigEndian(ip[16..], destination);
        BinaryPrimitives.WriteUInt16BigEndian(ip[ipHeader..], sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(ip[(ipHeader + 2)..], destinationPort);
        return frame;
    }

    /// <summary>
    /// The kernel's classic BPF interpreter (Documentation/networking/filter.rst) for the opcodes the program uses, over a
    /// frame as a fanout sees it: SKF_AD_PROTOCOL is the EtherType, SKF_NET_OFF + k the byte k of the network header
    /// (offset 14 of the frame). A load outside the packet ends the program with 0.
    /// </summary>
    private static uint Run(ReadOnlySpan<PacketFilter.SockFilter> program, ReadOnlySpan<byte> frame)
    {
        uint a = 0, x = 0;
        Span<uint> memory = stackalloc uint[16];
        for (var pc = 0; pc < program.Length; pc++)
        {
            var op = program[pc];
            switch (op.Code)
            {
                case 0x20 when op.K == FanoutProgram.AncillaryProtocol:
                    a = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
                    break;
                case 0x20:
                case 0x28:
                case 0x30:
                case 0x48:
                    var size = op.Code switch { 0x20 => 4, 0x30 => 1, _ => 2 };
                    var k = op.K + ((op.Code & 0x40) != 0 ? x : 0);
                    if (k < FanoutProgram.NetworkOffset)
                    {
                        throw new InvalidOperationException($"The program reads absolute offset {k}: the fanout sees data at the network header.");
                    }

                    var offset = 14 + (long)(k - FanoutProgram.NetworkOffset);
                    if (offset + size > frame.Length)
                    {
                        return 0;
                    }

                    var bytes = frame[(int)offset..];
                    a = size switch { 4 => BinaryPrimitives.ReadUInt32BigEndian(bytes), 2 => BinaryPrimitives.ReadUInt16BigEndian(bytes), _ => bytes[0] };
                    break;
                case 0x60:
                    a = memory[(int)op.K];
                    break;
                case 0x61:
                    x = memory[(int)op.K];
                    break;
                case 0x02:
                    memory[(int)op.K] = a;
                    break;
                case 0x07:
                    x = a;
                    break;
                case 0x54:
                    a &= op.K;
                    break;
                case 0x64:
                    a <<= (int)op.K;
                    break;
                case 0x74:
                    a >>= (int)op.K;
                    break;
                case 0x24:
                    a = unchecked(a * op.K);
                    break;
                case 0xac:
                    a ^= x;
                    break;
                case 0x15:
                    pc += a == op.K ? op.JumpTrue : op.JumpFalse;
                    break;
                case 0x45:
                    pc += (a & op.K) != 0 ? op.JumpTrue : op.JumpFalse;
                    break;
                case 0x16:
                    return a;
                case 0x06:
                    return op.K;
                default:
                    throw new InvalidOperationException($"Opcode 0x{op.Code:x2} is not interpreted.");
            }
        }

        throw new InvalidOperationException("The program fell off its end (the kernel's checker refuses that).");
    }
}
