using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Wire;

public sealed class AllocationTests
{
    [Fact]
    public void Parsing_and_emitting_allocate_nothing()
    {
        var a = Ipv4Address.Parse("198.18.0.1");
        var b = Ipv4Address.Parse("198.18.0.2");
        var frame = new byte[1514];
        var payload = new byte[1000];
        new Random(3).NextBytes(payload);

        int RoundTrip()
        {
            var options = TcpOptions.None;
            options.HasTimestamp = true;
            options.TsVal = 1;
            options.SetSackBlock(0, new SackBlock(10, 20));
            var span = frame.AsSpan();
            int o = EthernetFrame.WriteHeader(span, MacAddress.Broadcast, MacAddress.Zero, EtherType.Ipv4);
            int tcpLength = new TcpRepr { SourcePort = 1, DestinationPort = 2, SequenceNumber = 3, AcknowledgmentNumber = 4, Flags = TcpFlags.Ack, Window = 5, Options = options }.Emit(span[(o + 20)..]);
            o += Ipv4Packet.WriteHeader(span[o..], a, b, IpProtocol.Tcp, tcpLength + payload.Length, 9);
            payload.CopyTo(span[(o + tcpLength)..]);
            var sum = default(ChecksumAccumulator);
            sum.Add(payload.AsSpan(0, 333));
            sum.Add(payload.AsSpan(333));
            TcpChecksum.Finish(span[o..], tcpLength, a, b, payload.Length, sum);

            int total = 0;
            if (EthernetFrame.TryParse(span[..(o + tcpLength + payload.Length)], out var eth) == WireStatus.Ok
                && Ipv4Packet.TryParse(eth.Payload, out var ip) == WireStatus.Ok
                && TcpSegment.TryParse(ip.Payload, ip.Source, ip.Destination, out var tcp) == WireStatus.Ok)
            {
                total = tcp.Payload.Length + tcp.Options.SackBlockCount;
            }

            return total;
        }

        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(1001, RoundTrip()); // warm up past tiered compilation
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        int check = 0;
        for (int i = 0; i < 1000; i++)
        {
            check += RoundTrip();
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(1001 * 1000, check);
        Assert.Equal(0, allocated);
    }
}
