using System.Runtime.InteropServices;
using Vso.Transport.Wire;

namespace Vso.Transport.Links;

/// <summary>
/// A classic BPF program (SO_ATTACH_FILTER, Documentation/networking/filter.rst) that keeps from a packet socket the frames
/// the stack would only drop: IPv4 not addressed to the stack, and, when the stack has no gateway, IPv4 from sources
/// outside its subnet (it could never answer them; RFC 1122 §3.3.1). Under a flood of spoofed sources (hping3
/// --rand-source) those frames then cost no copy into the ring and no wake-up of the engine. ARP always passes.
/// </summary>
internal static class PacketFilter
{
    private const ushort LoadHalfAbsolute = 0x28;   // BPF_LD | BPF_H | BPF_ABS
    private const ushort LoadWordAbsolute = 0x20;   // BPF_LD | BPF_W | BPF_ABS
    private const ushort JumpIfEqual = 0x15;        // BPF_JMP | BPF_JEQ | BPF_K
    private const ushort AndConstant = 0x54;        // BPF_ALU | BPF_AND | BPF_K
    private const ushort Return = 0x06;             // BPF_RET | BPF_K

    // Offsets in an Ethernet II frame carrying IPv4 without options before the addresses (the addresses are at fixed offsets).
    private const uint EtherTypeOffset = 12;
    private const uint SourceOffset = 14 + 12;
    private const uint DestinationOffset = 14 + 16;

    /// <summary>The program; <paramref name="onLinkPrefixLength"/> 0 accepts every source.</summary>
    public static SockFilter[] Build(Ipv4Address address, int onLinkPrefixLength)
    {
        var checkSource = onLinkPrefixLength is > 0 and <= 32;
        var accept = checkSource ? 8 : 5;
        var drop = accept + 1;
        var mask = checkSource ? uint.MaxValue << (32 - onLinkPrefixLength) : 0;
        var program = new List<SockFilter>
        {
            new(LoadHalfAbsolute, 0, 0, EtherTypeOffset),
            new(JumpIfEqual, (byte)(accept - 2), 0, 0x0806),     // ARP
            new(JumpIfEqual, 0, (byte)(drop - 3), 0x0800),       // not IPv4: drop
            new(LoadWordAbsolute, 0, 0, DestinationOffset),
            new(JumpIfEqual, 0, (byte)(drop - 5), address.Value),
        };
        if (checkSource)
        {
            program.Add(new(LoadWordAbsolute, 0, 0, SourceOffset));
            program.Add(new(AndConstant, 0, 0, mask));
            program.Add(new(JumpIfEqual, (byte)(accept - 8), (byte)(drop - 8), address.Value & mask));
        }

        program.Add(new(Return, 0, 0, 0x40000));                // accept: the whole frame
        program.Add(new(Return, 0, 0, 0));                      // drop
        return [.. program];
    }

    /// <summary>struct sock_filter (linux/filter.h).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal readonly record struct SockFilter(ushort Code, byte JumpTrue, byte JumpFalse, uint K);
}
