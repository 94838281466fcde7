using System.Diagnostics;
using System.Runtime.InteropServices;
using Vso.Transport.Engine;
using Vso.Transport.Links;

namespace Vso.Transport.Tests.Links;

public sealed class PcapTests
{
    [Fact]
    public void Capture_of_transmitted_and_received_frames_is_byte_exact()
    {
        var clock = new VirtualClock(1_000_000);
        var (a, b) = SimulatedLink.CreatePair(clock);
        using var file = new MemoryStream();
        var writer = new PcapWriter(file, clock, leaveOpen: true);
        using var link = new CapturingLink(a, writer);

        // A sends at 1.234567 s: a 14-byte Ethernet header in the linear part, 6 bytes gathered.
        clock.AdvanceTo(1_234_567);
        var batch = new TransmitBatch(1, 64);
        byte[] header = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x88, 0xB5];
        var gathered = GC.AllocateArray<byte>(6, pinned: true);
        new byte[] { 0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01 }.CopyTo(gathered, 0);
        header.CopyTo(batch.Begin());
        batch.TryAddGather(Marshal.UnsafeAddrOfPinnedArrayElement(gathered, 0), 6);
        batch.Commit(14);
        link.Transmit(batch);
        batch.Clear();

        // B answers at 2.000001 s with 16 bytes; A receives them through the capturing link.
        clock.AdvanceTo(2_000_001);
        byte[] answer = [0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, 0x45, 0x00];
        answer.CopyTo(batch.Begin());
        batch.Commit(16);
        b.Transmit(batch);
        var got = new FrameCollector(clock);
        Assert.Equal(1, link.Receive(got, 10));
        Assert.Equal(answer, got.Frames[0]);
        link.Dispose();

        byte[] expected =
        [
            // file header: magic, version 2.4, thiszone 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET
            0xD4, 0xC3, 0xB2, 0xA1, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xFF, 0xFF, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,

            // record 1: ts 1 s 234567 us (0x00039447), incl 20, orig 20
            0x01, 0x00, 0x00, 0x00, 0x47, 0x94, 0x03, 0x00, 0x14, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xB5,
            0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01,

            // record 2: ts 2 s 1 us, incl 16, orig 16
            0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x45, 0x00,
        ];
        Assert.Equal(expected, file.ToArray());
        Assert.Equal(2, writer.FramesWritten);
        Assert.Equal(1, link.FramesCapturedTransmitted);
        Assert.Equal(1, link.FramesCapturedReceived);
    }

    [Fact]
    public void Frames_longer_than_the_snap_length_are_truncated_but_keep_their_length()
    {
        var clock = new VirtualClock(5_000_000);
        using var file = new MemoryStream();
        using (var writer = new PcapWriter(file, clock, snapLength: 20, leaveOpen: true))
        {
            writer.WriteFrame(LinkTestKit.Frame(1, 30));
            writer.WriteFrame(LinkTestKit.Frame(2, 18), timestampMicroseconds: 7_000_002);
        }

        var bytes = file.ToArray();
        Assert.Equal(24 + 16 + 20 + 16 + 18, bytes.Length);
        Assert.Equal(new byte[] { 0x14, 0x00, 0x00, 0x00 }, bytes[16..20]); // snaplen 20 in the file header
        Assert.Equal(new byte[] { 5, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0 }, bytes[24..40]);
        Assert.Equal(LinkTestKit.Frame(1, 30)[..20], bytes[40..60]);
        Assert.Equal(new byte[] { 7, 0, 0, 0, 2, 0, 0, 0, 18, 0, 0, 0, 18, 0, 0, 0 }, bytes[60..76]);
        Assert.Equal(LinkTestKit.Frame(2, 18), bytes[76..]);
    }

    [Fact]
    public void Capturing_after_the_fault_injector_records_only_what_survived()
    {
        var clock = new VirtualClock(1_000_000);
        var (a, b) = SimulatedLink.CreatePair(clock);
        using var file = new MemoryStream();
        var writer = new PcapWriter(file, clock, leaveOpen: true);
        using var tx = new FaultInjector(new CapturingLink(a, writer), clock, new FaultOptions { Seed = 9, LossRate = 0.5 });
        var batch = new TransmitBatch(64, LinkTestKit.FrameCapacity);
        LinkTestKit.Send(tx, batch, 0, 200, 60);
        var counter = new CountingReceiver();
        b.Receive(counter, int.MaxValue);
        Assert.InRange(counter.Frames, 70, 130);
        Assert.Equal(counter.Frames, writer.FramesWritten);
        Assert.Equal(200 - tx.FramesDroppedRandom, writer.FramesWritten);
    }

    [Fact]
    public void The_public_constructor_captures_to_a_file_it_owns_on_the_given_clock()
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vso-capture-{Environment.ProcessId}-{Guid.NewGuid():N}.pcap");
        try
        {
            var clock = new VirtualClock(3_000_000);
            var (a, b) = SimulatedLink.CreatePair(clock);
            using (var link = new CapturingLink(a, path, clock))
            {
                LinkTestKit.Send(link, new TransmitBatch(4, LinkTestKit.FrameCapacity), 0, 3, 60);
                Assert.Equal(3, link.FramesCapturedTransmitted);
            }

            // Complete once the link is disposed: it owned the writer and flushed and closed it.
            var bytes = File.ReadAllBytes(path);
            Assert.Equal(24 + (3 * (16 + 60)), bytes.Length);
            Assert.Equal(new byte[] { 0xD4, 0xC3, 0xB2, 0xA1 }, bytes[..4]);
            Assert.Equal(new byte[] { 3, 0, 0, 0, 0, 0, 0, 0 }, bytes[24..32]); // stamped 3.000000 s of virtual time
            Assert.Throws<ArgumentException>(() => new CapturingLink(b, " "));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TsharkFact]
    public void Tshark_reads_the_file_and_counts_every_frame()
    {
        Assert.True(Tshark.Path is not null, "CI=true but tshark is not on PATH; the CI image must install it.");
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vso-links-{Environment.ProcessId}-{Guid.NewGuid():N}.pcap");
        try
        {
            var clock = new VirtualClock(1_234_567);
            int[] lengths = [60, 64, 100, 1514, 42, 590];
            using (var writer = new PcapWriter(path, clock))
            {
                for (var i = 0; i < lengths.Length; i++)
                {
                    writer.WriteFrame(LinkTestKit.Frame((uint)i, lengths[i]));
                    clock.Advance(TimeSpan.FromMilliseconds(1));
                }
            }

            var lines = Tshark.Run("-r", path, "-T", "fields", "-E", "separator=,", "-e", "frame.len", "-e", "eth.src", "-e", "eth.type", "-e", "frame.time_epoch");
            Assert.Equal(lengths.Length, lines.Length);
            for (var i = 0; i < lengths.Length; i++)
            {
                var fields = lines[i].Split(',');
                Assert.Equal(lengths[i].ToString(System.Globalization.CultureInfo.InvariantCulture), fields[0]);
                Assert.Equal("02:00:00:00:00:01", fields[1]);
                Assert.Equal("0x88b5", fields[2]);
                Assert.StartsWith($"1.{234567 + (i * 1000)}", fields[3], StringComparison.Ordinal);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}

/// <summary>A fact that needs tshark: skipped when it is missing locally, failed when it is missing on CI (CI=true).</summary>
public sealed class TsharkFactAttribute : FactAttribute
{
    public TsharkFactAttribute()
    {
        if (Tshark.Path is null && !Tshark.IsCi)
        {
            Skip = "tshark is not on PATH (apt-get install tshark); on CI (CI=true) this test fails instead.";
        }
    }
}

internal static class Tshark
{
    public static readonly string? Path = Find();

    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static string[] Run(params string[] arguments)
    {
        var start = new ProcessStartInfo(Path!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "tshark did not finish within 60 s");
        Assert.True(process.ExitCode == 0, $"tshark exited with {process.ExitCode}: {stderr.Result}");
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    private static string? Find()
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = System.IO.Path.Combine(directory, "tshark");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
