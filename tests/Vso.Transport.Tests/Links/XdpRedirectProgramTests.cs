using System.Runtime.InteropServices;
using Vso.Transport.Links;
using Vso.Transport.Native;
using Vso.Transport.Tests.Interop;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Links;

/// <summary>
/// The AF_XDP link's XDP program, loaded into the kernel (so the verifier accepts it) and run over hand-built frames with
/// BPF_PROG_TEST_RUN. Loaded with XDP_DROP as the redirect's action for a queue without a socket, so that the two paths
/// tell themselves apart: DROP means "redirected to the stack's socket", PASS means "left to the kernel".
/// </summary>
[Collection("RealLinks")]
public sealed class XdpRedirectProgramTests
{
    private const int Redirected = 1; // XDP_DROP, standing in for the redirect
    private const int Passed = 2;     // XDP_PASS
    private static readonly Ipv4Address Stack = Ipv4Address.Parse("198.18.0.2");

    [RootTheory]
    [InlineData("198.18.0.2", Redirected)]
    [InlineData("198.18.0.3", Passed)]          // the kernel's own address on the same interface
    [InlineData("255.255.255.255", Passed)]
    [InlineData("2.0.18.198", Passed)]          // the stack's address byte-reversed: the comparison is in wire order
    public void IPv4_goes_to_the_stack_only_when_addressed_to_it(string destination, int expected) =>
        Assert.Equal(expected, Run(Ipv4Frame(Ipv4Address.Parse(destination))));

    [RootTheory]
    [InlineData("198.18.0.2", Redirected)]      // who-has the stack's address, or the answer to the stack's request
    [InlineData("198.18.0.3", Passed)]          // ARP for the kernel's address
    public void ARP_goes_to_the_stack_only_for_its_address(string target, int expected) =>
        Assert.Equal(expected, Run(ArpFrame(Ipv4Address.Parse(target))));

    [RootFact]
    public void Other_ether_types_and_short_frames_pass()
    {
        var ipv6 = Ipv4Frame(Stack);
        ipv6[12] = 0x86;
        ipv6[13] = 0xdd;
        Assert.Equal(Passed, Run(ipv6));

        var vlan = Ipv4Frame(Stack);
        vlan[12] = 0x81;
        vlan[13] = 0x00;
        Assert.Equal(Passed, Run(vlan));

        // Too short for the header the program reads: it passes without reading past the end.
        Assert.Equal(Passed, Run(Ipv4Frame(Stack)[..33]));
        Assert.Equal(Passed, Run(ArpFrame(Stack)[..41]));
    }

    private static unsafe int Run(byte[] frame)
    {
        using var program = XdpRedirectProgram.Load(Stack, 1, "test", missAction: Redirected);
        var attr = stackalloc byte[LinuxNative.BpfAttrSize];
        new Span<byte>(attr, LinuxNative.BpfAttrSize).Clear();
        fixed (byte* data = frame)
        {
            // union bpf_attr.test: prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat.
            *(uint*)attr = (uint)program.ProgramFd;
            *(uint*)(attr + 8) = (uint)frame.Length;
            *(ulong*)(attr + 16) = (ulong)data;
            *(uint*)(attr + 32) = 1;
            Assert.True(LinuxNative.bpf(BpfProgTestRun, attr, LinuxNative.BpfAttrSize) == 0, $"BPF_PROG_TEST_RUN: errno {Marshal.GetLastPInvokeError()}");
        }

        return *(int*)(attr + 4);
    }

    private const int BpfProgTestRun = 10;

    private static byte[] Ipv4Frame(Ipv4Address destination)
    {
        var frame = new byte[14 + 20 + 20];
        frame[12] = 0x08;
        frame[14] = 0x45;
        Ipv4Address.Parse("198.18.0.1").Write(frame.AsSpan(14 + 12));
        destination.Write(frame.AsSpan(14 + 16));
        return frame;
    }

    private static byte[] ArpFrame(Ipv4Address target)
    {
        var frame = new byte[42];
        frame[12] = 0x08;
        frame[13] = 0x06;
        frame[14 + 1] = 1;     // Ethernet
        frame[14 + 2] = 0x08;  // IPv4
        frame[14 + 4] = 6;
        frame[14 + 5] = 4;
        frame[14 + 7] = 1;     // request
        Ipv4Address.Parse("198.18.0.1").Write(frame.AsSpan(14 + 14));
        target.Write(frame.AsSpan(14 + 24));
        return frame;
    }
}
