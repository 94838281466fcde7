using System.Buffers.Binary;

namespace Vso.Transport.Wire;

/// <summary>
/// The TCP checksum (RFC 9293 §3.1 "Checksum"), a step apart from <see cref="TcpRepr.Emit"/> because the payload may be
/// gathered from pinned memory at send time, or summed by the kernel (segmentation offload).
/// </summary>
internal static class TcpChecksum
{
    /// <summary>
    /// Fills the checksum of the header at <paramref name="tcpHeader"/>[..headerLength]. <paramref name="payloadSum"/> holds the
    /// payload's bytes, summed from payload offset 0 (in as many pieces as the caller likes); the header length is a
    /// multiple of 4, so the payload starts at an even offset and the sums combine directly.
    /// </summary>
    public static void Finish(
        Span<byte> tcpHeader,
        int headerLength,
        Ipv4Address source,
        Ipv4Address destination,
        int payloadLength,
        ChecksumAccumulator payloadSum)
    {
        System.Diagnostics.Debug.Assert(payloadSum.Length == payloadLength, "payload sum covers a different length than payloadLength");
        var header = tcpHeader[..headerLength];
        BinaryPrimitives.WriteUInt16BigEndian(header[16..], 0);
        var sum = default(ChecksumAccumulator);
        AddPseudoHeader(ref sum, source, destination, headerLength + payloadLength);
        sum.Add(header);
        sum.Add(in payloadSum);
        BinaryPrimitives.WriteUInt16BigEndian(header[16..], sum.Finish());
    }

    /// <summary>
    /// For a super-segment that the kernel segments (CHECKSUM_PARTIAL): the checksum field holds the folded pseudo-header
    /// sum, not complemented, for the whole TCP length; the kernel adjusts it per segment and adds header and payload.
    /// </summary>
    public static void WritePseudoHeaderSum(Span<byte> tcpHeader, Ipv4Address source, Ipv4Address destination, int tcpLength)
    {
        var sum = default(ChecksumAccumulator);
        AddPseudoHeader(ref sum, source, destination, tcpLength);
        BinaryPrimitives.WriteUInt16BigEndian(tcpHeader[16..], (ushort)~sum.Finish());
    }

    /// <summary>RFC 9293 §3.1 pseudo-header: source, destination, zero, PTCL = 6, TCP length (header + data).</summary>
    internal static void AddPseudoHeader(ref ChecksumAccumulator sum, Ipv4Address source, Ipv4Address destination, int tcpLength)
    {
        sum.AddUInt32(source.Value);
        sum.AddUInt32(destination.Value);
        sum.AddUInt16((ushort)IpProtocol.Tcp);
        sum.AddUInt16((ushort)tcpLength);
    }
}
