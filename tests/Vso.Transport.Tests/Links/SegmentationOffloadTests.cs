using System.Buffers.Binary;
using System.Security.Cryptography;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Tests.Tcp;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Links;

/// <summary>
/// The TCP sender's super-segments (generic segmentation offload) in virtual time, without root: a link decorator that
/// offers <see cref="ILink.MaxOffloadPayload"/> and cuts each super-segment the way the kernel's GSO does (sequence
/// numbers, IPv4 length, identification and checksum per segment; FIN and PSH on the last only; the TCP checksum from
/// the pseudo-header sum the stack left in the field), after checking that sum. Clean and lossy transfers arrive intact
/// and the scoreboard, which saw every segment, recovers the losses.
/// </summary>
public sealed class SegmentationOffloadTests
{
    [Theory]
    [InlineData(0.0)]
    [InlineData(0.02)]
    public void Super_segments_cut_like_GSO_deliver_8_MiB_intact(double loss)
    {
        OffloadingLink? offload = null;
        var forward = loss > 0 ? new FaultOptions { Seed = 7, LossRate = loss } : null;
        using var net = new SimulatedNetwork(
            clientFaults: forward,
            configure: s => s.IdentifyMode = IdentifyMode.Pinned,
            delay: TimeSpan.FromMicroseconds(200),
            wrapClientLink: inner => offload = new OffloadingLink(inner));
        var (client, server) = net.Connect();
        var data = SimulatedNetwork.Pattern(8 << 20, 3);
        var sending = SimulatedNetwork.SendAllAsync(client, data, 1 << 20);
        var receiving = SimulatedNetwork.ReceiveAllAsync(server);
        Assert.True(net.Run(() => sending.IsCompleted && receiving.IsCompleted, TimeSpan.FromMinutes(5)), "the transfer did not finish");

        Assert.True(sending.IsCompletedSuccessfully, sending.Exception?.ToString());
        var received = net.Await(receiving);
        Assert.Equal(data.Length, received.Length);
        Assert.Equal(SHA256.HashData(data), received.Hash);
        var info = client.GetInfo();
        Assert.Equal(0, offload!.BadPseudoHeaderSums);
        Assert.True(offload.SuperSegments > 50, $"only {offload.SuperSegments} super-segments");
        Assert.Equal(offload.SuperSegments, info.OffloadedSuperSegments);
        Assert.Equal(0, info.FirstTransmissionCopiedBytes);
        if (loss > 0)
        {
            Assert.True(info.RetransmittedSegments > 0, "nothing was lost or nothing was resent");
        }
    }

    [Fact]
    public void Copy_mode_and_links_without_offload_send_single_segments()
    {
        OffloadingLink? offload = null;
        using var net = new SimulatedNetwork(
            configure: s => s.IdentifyMode = IdentifyMode.Copy,
            wrapClientLink: inner => offload = new OffloadingLink(inner));
        var (client, server) = net.Connect();
        var data = SimulatedNetwork.Pattern(1 << 20, 4);
        var sending = SimulatedNetwork.SendAllAsync(client, data, 1 << 20);
        var receiving = SimulatedNetwork.ReceiveAllAsync(server);
        Assert.True(net.Run(() => sending.IsCompleted && receiving.IsCompleted));
        Assert.Equal(SHA256.HashData(data), net.Await(receiving).Hash);
        Assert.Equal(0, offload!.SuperSegments);
        Assert.Equal(0, client.GetInfo().OffloadedSuperSegments);
    }

    /// <summary>Offers segmentation offload and does the kernel's part (tcp_gso_segment) in managed code.</summary>
    private sealed class OffloadingLink(ILink inner) : ILink
    {
        private readonly TransmitBatch _out = new(64, 14 + inner.Mtu);
        private readonly byte[] _frame = new byte[70_000];

        public long SuperSegments { get; private set; }

        public long BadPseudoHeaderSums { get; private set; }

        public MacAddress HardwareAddress => inner.HardwareAddress;

        public int Mtu => inner.Mtu;

        public long NextEventMicroseconds => inner.NextEventMicroseconds;

        public int MaxOffloadPayload => 65_535 - 20 - 60;

        public int Receive(IFrameReceiver receiver, int maxFrames) => inner.Receive(receiver, maxFrames);

        public bool WaitForFrames(TimeSpan timeout) => inner.WaitForFrames(timeout);

        public void Dispose() => inner.Dispose();

        public unsafe void Transmit(TransmitBatch batch)
        {
            for (var i = 0; i < batch.Count; i++)
            {
                // The whole frame: linear part, then the gathered pieces.
                var length = 0;
                batch.Linear(i).CopyTo(_frame);
                length += batch.Linear(i).Length;
                foreach (var g in batch.Gathers(i))
                {
                    new ReadOnlySpan<byte>((void*)g.Address, g.Length).CopyTo(_frame.AsSpan(length));
                    length += g.Length;
                }

                var gso = batch.GsoSize(i);
                if (gso == 0)
                {
                    Emit(_frame.AsSpan(0, length));
                    continue;
                }

                SuperSegments++;
                Cut(_frame.AsSpan(0, length), gso);
            }

            Flush();
        }

        private void Cut(Span<byte> frame, int gso)
        {
            var ip = frame[14..];
            var tcpOffset = 14 + 20;
            var tcpHeaderLength = (frame[tcpOffset + 12] >> 4) * 4;
            var headers = tcpOffset + tcpHeaderLength;
            var payload = frame.Length - headers;
            var source = new Ipv4Address(BinaryPrimitives.ReadUInt32BigEndian(ip[12..]));
            var destination = new Ipv4Address(BinaryPrimitives.ReadUInt32BigEndian(ip[16..]));

            // The stack leaves the folded pseudo-header sum for the whole TCP length (CHECKSUM_PARTIAL), not complemented.
            var pseudo = default(ChecksumAccumulator);
            TcpChecksum.AddPseudoHeader(ref pseudo, source, destination, tcpHeaderLength + payload);
            if (BinaryPrimitives.ReadUInt16BigEndian(frame[(tcpOffset + 16)..]) != (ushort)~pseudo.Finish())
            {
                BadPseudoHeaderSums++;
            }

            var sequence = BinaryPrimitives.ReadUInt32BigEndian(frame[(tcpOffset + 4)..]);
            var id = BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
            var flags = frame[tcpOffset + 13];
            for (var offset = 0; offset < payload; offset += gso)
            {
                var n = Math.Min(gso, payload - offset);
                var last = offset + n == payload;
                var segment = _out.Begin();
                frame[..headers].CopyTo(segment);
                frame.Slice(headers + offset, n).CopyTo(segment[headers..]);
                var sip = segment[14..];
                BinaryPrimitives.WriteUInt16BigEndian(sip[2..], (ushort)(20 + tcpHeaderLength + n));
                BinaryPrimitives.WriteUInt16BigEndian(sip[4..], (ushort)(id + (offset / gso)));
                BinaryPrimitives.WriteUInt16BigEndian(sip[10..], 0);
                BinaryPrimitives.WriteUInt16BigEndian(sip[10..], InternetChecksum.Compute(sip[..20]));
                var tcp = segment.Slice(tcpOffset, tcpHeaderLength + n);
                BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence + (uint)offset);
                tcp[13] = last ? flags : (byte)(flags & ~(0x01 | 0x08)); // FIN and PSH on the last segment only
                var sum = default(ChecksumAccumulator);
                sum.Add(tcp[tcpHeaderLength..]);
                TcpChecksum.Finish(tcp, tcpHeaderLength, source, destination, n, sum);
                _out.Commit(headers + n);
                if (_out.IsFull)
                {
                    Flush();
                }
            }
        }

        private void Emit(ReadOnlySpan<byte> frame)
        {
            frame.CopyTo(_out.Begin());
            _out.Commit(frame.Length);
            if (_out.IsFull)
            {
                Flush();
            }
        }

        private void Flush()
        {
            if (_out.Count > 0)
            {
                inner.Transmit(_out);
            }

            _out.Clear();
        }
    }
}
