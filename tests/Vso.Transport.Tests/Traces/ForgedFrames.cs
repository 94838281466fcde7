using Vso.Transport.Interface;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// Frames a <see cref="RawPeer"/> cannot send (any source address, ARP from any sender, ICMP errors), handed to the
/// stack's interface as if received from the link, then the stack runs.
/// </summary>
internal static class ForgedFrames
{
    public static readonly MacAddress ForgerHardware = new(0x02_00_00_00_00_99);

    public static NetworkInterface Interface(this RawPeer peer) => peer.Stack.Core.Interface;

    /// <summary>A TCP segment from <paramref name="source"/>:<paramref name="sourcePort"/> to <paramref name="destination"/>:<paramref name="destinationPort"/>.</summary>
    public static void SendTcp(this RawPeer peer, Ipv4Address source, ushort sourcePort, Ipv4Address destination, ushort destinationPort, TcpFlags flags, uint seq, uint ack = 0)
    {
        var header = new TcpRepr
        {
            SourcePort = sourcePort,
            DestinationPort = destinationPort,
            SequenceNumber = seq,
            AcknowledgmentNumber = ack,
            Flags = flags,
            Window = 65535,
            Options = (flags & TcpFlags.Syn) != 0 ? RawPeer.SynOptions() : TcpOptions.None,
        };
        var tcp = new byte[header.HeaderLength];
        var length = header.Emit(tcp);
        TcpChecksum.Finish(tcp, length, source, destination, 0, default);
        peer.SendIpv4(source, destination, IpProtocol.Tcp, tcp.AsSpan(0, length));
    }

    /// <summary>An IPv4 datagram (DF set, TTL 64) from <paramref name="source"/>, to the stack's hardware address.</summary>
    public static void SendIpv4(this RawPeer peer, Ipv4Address source, Ipv4Address destination, IpProtocol protocol, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[Math.Max(60, EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + payload.Length)];
        EthernetFrame.WriteHeader(frame, peer.Stack.Core.Link.HardwareAddress, ForgerHardware, EtherType.Ipv4);
        Ipv4Packet.WriteHeader(frame.AsSpan(EthernetFrame.HeaderLength), source, destination, protocol, payload.Length, 1);
        payload.CopyTo(frame.AsSpan(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength));
        peer.Interface().OnFrame(frame);
        peer.Pump();
    }

    /// <summary>An ARP packet from <paramref name="senderAddress"/>, broadcast.</summary>
    public static void SendArp(this RawPeer peer, ArpOperation operation, Ipv4Address senderAddress, Ipv4Address targetAddress)
    {
        var frame = new byte[60];
        EthernetFrame.WriteHeader(frame, MacAddress.Broadcast, ForgerHardware, EtherType.Arp);
        ArpPacket.Write(frame.AsSpan(EthernetFrame.HeaderLength), operation, ForgerHardware, senderAddress, MacAddress.Zero, targetAddress);
        peer.Interface().OnFrame(frame);
        peer.Pump();
    }

    /// <summary>
    /// The quote an ICMP error carries for a TCP segment the stack sent from <paramref name="stackPort"/> to the peer:
    /// the IPv4 header and the first 8 bytes of TCP (ports, sequence number).
    /// </summary>
    public static byte[] QuoteOfStackSegment(this RawPeer peer, ushort stackPort, ushort peerPort, uint seq, int totalLength = 1500)
    {
        var quote = new byte[Ipv4Packet.MinHeaderLength + 8];
        Ipv4Packet.WriteHeader(quote, RawPeer.StackAddress, peer.Remote, IpProtocol.Tcp, totalLength - Ipv4Packet.MinHeaderLength, 7);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(quote.AsSpan(20), stackPort);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(quote.AsSpan(22), peerPort);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(quote.AsSpan(24), seq);
        return quote;
    }

    /// <summary>A Destination Unreachable (RFC 792) with <paramref name="quote"/>, from <paramref name="source"/> (a router or the peer).</summary>
    public static void SendUnreachable(this RawPeer peer, Ipv4Address source, byte code, byte[] quote, ushort nextHopMtu = 0)
    {
        var message = new byte[IcmpErrorMessage.HeaderLength + quote.Length];
        IcmpErrorMessage.Write(message, code, nextHopMtu, quote);
        peer.SendIpv4(source, RawPeer.StackAddress, IpProtocol.Icmp, message);
    }
}
