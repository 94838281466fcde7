using System.Buffers.Binary;
using Vso.Transport.Engine;
using Vso.Transport.Links;

namespace Vso.Transport.Tests.Links;

/// <summary>Test frames are Ethernet II frames whose bytes follow from (id, length) alone.</summary>
internal static class LinkTestKit
{
    public const int FrameCapacity = 1514;

    /// <summary>IEEE 802 local experimental EtherType 1.</summary>
    public const ushort TestEtherType = 0x88B5;

    public static void WriteFrame(Span<byte> frame, uint id)
    {
        // dst 02:00:00:00:00:02, src 02:00:00:00:00:01
        frame[..12].Clear();
        frame[0] = 0x02;
        frame[5] = 0x02;
        frame[6] = 0x02;
        frame[11] = 0x01;
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], TestEtherType);
        BinaryPrimitives.WriteUInt32BigEndian(frame[14..], id);
        for (var k = 18; k < frame.Length; k++)
        {
            frame[k] = (byte)((id * 31) + (uint)k);
        }
    }

    public static byte[] Frame(uint id, int length)
    {
        var frame = new byte[length];
        WriteFrame(frame, id);
        return frame;
    }

    public static void Add(TransmitBatch batch, uint id, int length)
    {
        var span = batch.Begin();
        WriteFrame(span[..length], id);
        batch.Commit(length);
    }

    public static uint IdOf(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadUInt32BigEndian(frame[14..]);

    /// <summary>Sends <paramref name="count"/> frames of <paramref name="length"/> bytes with ids from <paramref name="firstId"/>, in batches.</summary>
    public static void Send(ILink link, TransmitBatch batch, uint firstId, int count, int length)
    {
        for (var i = 0; i < count; i++)
        {
            Add(batch, firstId + (uint)i, length);
            if (batch.IsFull || i == count - 1)
            {
                link.Transmit(batch);
                batch.Clear();
            }
        }
    }

    /// <summary>
    /// Runs the virtual-time loop, event by event, up to <paramref name="untilMicroseconds"/>, then sets
    /// the clock there and delivers what is due.
    /// </summary>
    public static void RunUntil(VirtualClock clock, ILink sender, ILink receiverLink, IFrameReceiver sink, long untilMicroseconds)
    {
        while (true)
        {
            sender.Receive(Discard.Instance, int.MaxValue);
            receiverLink.Receive(sink, int.MaxValue);
            var next = Math.Min(sender.NextEventMicroseconds, receiverLink.NextEventMicroseconds);
            if (next > untilMicroseconds)
            {
                break;
            }

            clock.AdvanceTo(next);
        }

        clock.AdvanceTo(untilMicroseconds);
        sender.Receive(Discard.Instance, int.MaxValue);
        receiverLink.Receive(sink, int.MaxValue);
    }

    /// <summary>
    /// Runs the virtual-time loop until nothing is pending: releases the sender's held frames, delivers
    /// what is due at the receiver, jumps to the next event.
    /// </summary>
    public static void Drain(VirtualClock clock, ILink sender, ILink receiverLink, IFrameReceiver sink)
    {
        while (true)
        {
            sender.Receive(Discard.Instance, int.MaxValue);
            receiverLink.Receive(sink, int.MaxValue);
            var next = Math.Min(sender.NextEventMicroseconds, receiverLink.NextEventMicroseconds);
            if (next == long.MaxValue)
            {
                return;
            }

            Assert.True(next > clock.NowMicroseconds, "NextEventMicroseconds must lie in the future once due frames are taken");
            clock.AdvanceTo(next);
        }
    }
}

/// <summary>Keeps a copy of every frame and the clock time it arrived.</summary>
internal sealed class FrameCollector(IClock clock) : IFrameReceiver
{
    public List<byte[]> Frames { get; } = [];

    public List<long> Times { get; } = [];

    public IEnumerable<uint> Ids => Frames.Select(f => LinkTestKit.IdOf(f));

    public void OnFrame(ReadOnlySpan<byte> frame)
    {
        Frames.Add(frame.ToArray());
        Times.Add(clock.NowMicroseconds);
    }
}

/// <summary>Counts without allocating.</summary>
internal sealed class CountingReceiver : IFrameReceiver
{
    public long Frames { get; private set; }

    public long Bytes { get; private set; }

    public void OnFrame(ReadOnlySpan<byte> frame)
    {
        Frames++;
        Bytes += frame.Length;
    }
}

internal sealed class Discard : IFrameReceiver
{
    public static readonly Discard Instance = new();

    public void OnFrame(ReadOnlySpan<byte> frame)
    {
    }
}
