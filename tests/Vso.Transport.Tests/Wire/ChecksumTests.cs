using System.Buffers.Binary;
using CsCheck;
using Vso.Transport.Wire;

namespace Vso.Transport.Tests.Wire;

public sealed class ChecksumTests
{
    [Fact]
    public void Vectorized_sum_over_odd_pieces_equals_the_scalar_reference()
    {
        var gen =
            from data in Gen.Byte.Array[0, 3000]
            from cuts in Gen.Int[0, 3000].Array[0, 8]
            select (data, cuts: cuts.Select(c => Math.Min(c, data.Length)).Order().ToArray());

        Deterministic.Check(gen, t =>
        {
            var (data, cuts) = t;
            ushort expected = WireTestFrames.ReferenceChecksum(data);
            Assert.Equal(expected, InternetChecksum.Compute(data));

            var sum = default(ChecksumAccumulator);
            int previous = 0;
            foreach (int cut in cuts.Append(data.Length))
            {
                sum.Add(data.AsSpan(previous, cut - previous));
                previous = cut;
            }

            Assert.Equal(data.Length, sum.Length);
            Assert.Equal(expected, sum.Finish());
        }, seed: 0xC5_0001, iterations: 3000);
    }

    [Fact]
    public void Every_split_into_three_pieces_of_a_short_buffer_matches()
    {
        // Exhaustive over the small cases where odd/even handoffs and the scalar tail interact.
        var random = new Random(11);
        var data = new byte[70];
        random.NextBytes(data);
        for (int length = 0; length <= data.Length; length++)
        {
            ushort expected = WireTestFrames.ReferenceChecksum(data.AsSpan(0, length));
            for (int a = 0; a <= length; a++)
            {
                for (int b = a; b <= length; b++)
                {
                    var sum = default(ChecksumAccumulator);
                    sum.Add(data.AsSpan(0, a));
                    sum.Add(data.AsSpan(a, b - a));
                    sum.Add(data.AsSpan(b, length - b));
                    Assert.True(expected == sum.Finish(), $"length {length}, cuts {a} {b}");
                }
            }
        }
    }

    [Fact]
    public void Long_buffers_of_high_bytes_do_not_overflow_vector_lanes()
    {
        // 3 MiB of 0xFF.. bytes crosses the 1 MiB block at which vector lanes are drained into the 64-bit sum.
        var data = new byte[(3 << 20) + 5];
        var random = new Random(5);
        random.NextBytes(data);
        for (int i = 0; i < data.Length; i += 3)
        {
            data[i] = 0xFF;
        }

        Assert.Equal(WireTestFrames.ReferenceChecksum(data), InternetChecksum.Compute(data));
        Array.Fill(data, (byte)0xFF);
        Assert.Equal(WireTestFrames.ReferenceChecksum(data), InternetChecksum.Compute(data));
    }

    [Fact]
    public void Pseudo_header_fields_equal_their_big_endian_bytes()
    {
        var gen = from a in Gen.UInt from b in Gen.UShort from tail in Gen.Byte.Array[0, 100] select (a, b, tail);
        Deterministic.Check(gen, t =>
        {
            var bytes = new byte[6 + t.tail.Length];
            BinaryPrimitives.WriteUInt32BigEndian(bytes, t.a);
            BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(4), t.b);
            t.tail.CopyTo(bytes, 6);

            var sum = default(ChecksumAccumulator);
            sum.AddUInt32(t.a);
            sum.AddUInt16(t.b);
            sum.Add(t.tail);
            Assert.Equal(bytes.Length, sum.Length);
            Assert.Equal(WireTestFrames.ReferenceChecksum(bytes), sum.Finish());
        }, seed: 0xC5_0002, iterations: 1000);
    }

    [Fact]
    public void Appending_an_accumulator_equals_adding_its_bytes()
    {
        var gen = from first in Gen.Byte.Array[0, 300] from second in Gen.Byte.Array[0, 300] from cut in Gen.Int[0, 300] select (first, second, cut);
        Deterministic.Check(gen, t =>
        {
            int cut = Math.Min(t.cut, t.second.Length);
            var tail = default(ChecksumAccumulator);
            tail.Add(t.second.AsSpan(0, cut));
            tail.Add(t.second.AsSpan(cut));

            var sum = default(ChecksumAccumulator);
            sum.Add(t.first);
            sum.Add(in tail);

            Assert.Equal(t.first.Length + t.second.Length, sum.Length);
            Assert.Equal(WireTestFrames.ReferenceChecksum([.. t.first, .. t.second]), sum.Finish());
        }, seed: 0xC5_0003, iterations: 1000);
    }

    [Fact]
    public void Rfc1624_incremental_update_equals_recomputation()
    {
        var gen =
            from data in Gen.Byte.Array[8, 200]
            from fieldWord in Gen.Int[1, 1000]
            from newValue16 in Gen.UShort
            from newValue32 in Gen.UInt
            select (data, fieldWord, newValue16, newValue32);

        Deterministic.Check(gen, t =>
        {
            // The first byte is non-zero, as in every real header (RFC 1624 §3: only all-zero data makes
            // eqn. 3 and recomputation disagree, on 0x0000 versus 0xFFFF).
            var data = t.data.ToArray();
            data[0] |= 0x40;
            int offset = 2 * (1 + (t.fieldWord % ((data.Length - 4) / 2)));
            ushort checksum = InternetChecksum.Compute(data);

            var changed16 = data.ToArray();
            ushort old16 = BinaryPrimitives.ReadUInt16BigEndian(changed16.AsSpan(offset));
            BinaryPrimitives.WriteUInt16BigEndian(changed16.AsSpan(offset), t.newValue16);
            Assert.Equal(InternetChecksum.Compute(changed16), InternetChecksum.Update(checksum, old16, t.newValue16));

            var changed32 = data.ToArray();
            uint old32 = BinaryPrimitives.ReadUInt32BigEndian(changed32.AsSpan(offset));
            BinaryPrimitives.WriteUInt32BigEndian(changed32.AsSpan(offset), t.newValue32);
            Assert.Equal(InternetChecksum.Compute(changed32), InternetChecksum.Update(checksum, old32, t.newValue32));
        }, seed: 0xC5_0004, iterations: 5000);
    }

    [Fact]
    public void Incremental_update_of_an_ipv4_header_keeps_it_valid()
    {
        // The use the stack has for RFC 1624: rewrite a field of an emitted header without summing it again.
        var gen = from id in Gen.UShort from ttl in Gen.Byte from addresses in Gen.UInt.Array[3] from newId in Gen.UShort select (id, ttl, addresses, newId);
        Deterministic.Check(gen, t =>
        {
            var header = new byte[20];
            Ipv4Packet.WriteHeader(header, new Ipv4Address(t.addresses[0]), new Ipv4Address(t.addresses[1]), IpProtocol.Tcp, 0, t.id, t.ttl);
            ushort checksum = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(10));

            checksum = InternetChecksum.Update(checksum, t.addresses[1], t.addresses[2]);
            new Ipv4Address(t.addresses[2]).Write(header.AsSpan(16));
            checksum = InternetChecksum.Update(checksum, t.id, t.newId);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), t.newId);
            BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(10), checksum);

            Assert.Equal(WireStatus.Ok, Ipv4Packet.TryParse(header, out var packet));
            Assert.Equal(new Ipv4Address(t.addresses[2]), packet.Destination);
            Assert.Equal(t.newId, packet.Identification);
        }, seed: 0xC5_0005, iterations: 2000);
    }

    [Fact]
    public void Known_vector_from_rfc1071()
    {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2 (before complement).
        byte[] data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        Assert.Equal((ushort)(0xFFFF - 0xddf2), InternetChecksum.Compute(data));
    }
}
