using System.Buffers.Binary;
using System.Net;

namespace Vso.Transport.Kestrel;

/// <summary>The parsed header of one connection, as its <see cref="IProxyProtocolFeature"/>.</summary>
internal sealed class ProxyProtocolFeature : IProxyProtocolFeature
{
    private static readonly KeyValuePair<byte, ReadOnlyMemory<byte>>[] NoTlvs = [];

    /// <param name="tlvs">The header's TLV bytes (already checked by the parser); copied, as the receive buffer is reused.</param>
    public ProxyProtocolFeature(in ProxyHeader header, EndPoint? balancer, ReadOnlySpan<byte> tlvs)
    {
        Version = header.Version;
        IsProxied = header.IsProxied;
        BalancerEndPoint = balancer;
        Tlvs = tlvs.IsEmpty ? NoTlvs : Split(tlvs.ToArray());
    }

    public int Version { get; }

    public bool IsProxied { get; }

    public EndPoint? BalancerEndPoint { get; }

    public IReadOnlyList<KeyValuePair<byte, ReadOnlyMemory<byte>>> Tlvs { get; }

    private static KeyValuePair<byte, ReadOnlyMemory<byte>>[] Split(byte[] bytes)
    {
        var list = new List<KeyValuePair<byte, ReadOnlyMemory<byte>>>();
        var at = 0;
        while (at < bytes.Length)
        {
            var length = BinaryPrimitives.ReadUInt16BigEndian(bytes.AsSpan(at + 1));
            list.Add(new(bytes[at], bytes.AsMemory(at + 3, length)));
            at += 3 + length;
        }

        return [.. list];
    }
}
