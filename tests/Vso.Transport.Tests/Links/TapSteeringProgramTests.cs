using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Native;
using Vso.Transport.Tests.Interop;

namespace Vso.Transport.Tests.Links;

/// <summary>
/// The TAP steering program (TUNSETSTEERINGEBPF), loaded into the kernel (so the verifier accepts it) and run there with
/// BPF_PROG_TEST_RUN against the stack's own <see cref="FlowHash"/>: a segment the kernel sends into a multi-queue TAP must
/// reach the queue of the shard that owns its connection, and everything that is not a TCP segment must reach queue 0.
/// </summary>
[Collection("RealLinks")]
public sealed class TapSteeringProgramTests
{
    private static readonly int[] QueueCounts = [2, 3, 4, 7, 64, 256];

    [RootFact]
    public void The_program_computes_the_stacks_shard_for_random_TCP_flows()
    {
        var programs = QueueCounts.Select(n => TapSteeringProgram.Load(n, "test")).ToArray();
        try
        {
            var random = new Random(13);
            var shards = new int[QueueCounts.Length, 2];
            for (var i = 0; i < 10_000; i++)
            {
                var source = (uint)random.NextInt64(0, 1L << 32);
                var destination = (uint)random.NextInt64(0, 1L << 32);
                var sourcePort = (ushort)random.Next(1, 65536);
                var destinationPort = (ushort)random.Next(1, 65536);
                var options = random.Next(0, 11) * 4; // IPv4 options shift the ports: the program must read the header length
                var frame = FanoutProgramTests.TcpFrame(source, destination, sourcePort, destinationPort, options);
                for (var k = 0; k < QueueCounts.Length; k++)
                {
                    var expected = FlowHash.QueueOf(frame, QueueCounts[k]);
                    Assert.Equal(expected, Run(programs[k], frame));
                    Assert.Equal(FrameRoute.Shard, FlowHash.Route(frame, QueueCounts[k], out var shard));
                    Assert.Equal(expected, shard);
                    shards[k, expected == 0 ? 0 : 1]++;
                }
            }

            // Not a program that returns 0 for everything: every queue count spreads the flows.
            for (var k = 0; k < QueueCounts.Length; k++)
            {
                Assert.True(shards[k, 1] > 10_000 / 2, $"{QueueCounts[k]} queues: only {shards[k, 1]} of 10,000 flows off queue 0");
            }
        }
        finally
        {
            foreach (var program in programs)
            {
                program.Dispose();
            }
        }
    }

    /// <summary>
    /// The kernel keeps the program's value in a u16 before taking it modulo the queues: a hash whose low 16 bits give
    /// another shard than the whole hash must still reach the right queue (3 queues: 2^16 mod 3 = 1).
    /// </summary>
    [RootFact]
    public void The_value_is_the_shard_itself_not_a_hash_the_kernel_would_cut_to_16_bits()
    {
        using var program = TapSteeringProgram.Load(3, "test");
        var random = new Random(5);
        var found = 0;
        for (var i = 0; i < 1000; i++)
        {
            var frame = FanoutProgramTests.TcpFrame((uint)random.NextInt64(0, 1L << 32), 0xc6120002, (ushort)random.Next(1, 65536), 8080, 0);
            var hash = FlowHash.Hash(BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(14 + 12)), BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(34)), 0xc6120002, 8080);
            if ((hash & 0xffff) % 3 != hash % 3)
            {
                found++;
                Assert.Equal((int)(hash % 3), Run(program, frame));
            }
        }

        Assert.True(found > 100, $"only {found} hashes whose low 16 bits name another shard");
    }

    [RootFact]
    public void ARP_ICMP_UDP_later_fragments_and_short_frames_go_to_queue_0()
    {
        using var program = TapSteeringProgram.Load(4, "test");

        // A flow that hashes off queue 0, so that a 0 below is the program's choice and not this flow's shard.
        var random = new Random(3);
        byte[] Flow()
        {
            while (true)
            {
                var frame = FanoutProgramTests.TcpFrame(0xc6120001, 0xc6120002, (ushort)random.Next(1024, 65536), 8080, 0);
                if (FlowHash.QueueOf(frame, 4) != 0)
                {
                    Assert.Equal(FlowHash.QueueOf(frame, 4), Run(program, frame));
                    return frame;
                }
            }
        }

        var arp = new byte[42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        Assert.Equal(0, Run(program, arp));

        var icmp = Flow();
        icmp[14 + 9] = 1;
        Assert.Equal(0, Run(program, icmp));

        var udp = Flow();
        udp[14 + 9] = 17;
        Assert.Equal(0, Run(program, udp));

        var ipv6 = Flow();
        ipv6[12] = 0x86;
        ipv6[13] = 0xdd;
        Assert.Equal(0, Run(program, ipv6));

        var fragment = Flow();
        BinaryPrimitives.WriteUInt16BigEndian(fragment.AsSpan(14 + 6), 185); // offset 1480 bytes
        Assert.Equal(0, Run(program, fragment));

        // A first fragment has its ports: it goes with the rest of its flow.
        var first = Flow();
        var expected = FlowHash.QueueOf(first, 4);
        BinaryPrimitives.WriteUInt16BigEndian(first.AsSpan(14 + 6), 0x2000); // MF
        Assert.Equal(expected, Run(program, first));

        // Truncated before the ports: the failed packet load ends the program with 0.
        Assert.Equal(0, Run(program, Flow().AsSpan(0, 14 + 20 + 2).ToArray()));
    }

    /// <summary>Runs the program once over <paramref name="frame"/> in the kernel (BPF_PROG_TEST_RUN) and returns its value.</summary>
    private static unsafe int Run(TapSteeringProgram program, byte[] frame)
    {
        var attr = stackalloc byte[LinuxNative.BpfAttrSize];
        new Span<byte>(attr, LinuxNative.BpfAttrSize).Clear();
        fixed (byte* data = frame)
        {
            // union bpf_attr.test: prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat.
            *(uint*)attr = (uint)program.ProgramFd;
            *(uint*)(attr + 8) = (uint)frame.Length;
            *(ulong*)(attr + 16) = (ulong)data;
            *(uint*)(attr + 32) = 1;
            Assert.True(LinuxNative.bpf(LinuxNative.BPF_PROG_TEST_RUN, attr, LinuxNative.BpfAttrSize) == 0, $"BPF_PROG_TEST_RUN: errno {Marshal.GetLastPInvokeError()}");
        }

        return *(int*)(attr + 4);
    }
}
