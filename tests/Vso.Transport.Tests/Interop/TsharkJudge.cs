using System.Diagnostics;
using System.Text;
using Vso.Transport.Native;

namespace Vso.Transport.Tests.Interop;

/// <summary>What tshark saw in a capture.</summary>
internal sealed record CaptureVerdict(int BadFrames, int BadFromStack, string BadSample, int Retransmissions, Dictionary<string, int> RetransmissionsBySource, int Frames, int SuperFramesFromStack);

/// <summary>
/// A tshark capture on the client's device for the length of a transfer (bounded: it stops itself after
/// <c>maxSeconds</c>), then judged: no malformed frame, no bad IPv4 or TCP checksum; retransmissions counted.
/// </summary>
internal sealed class TsharkJudge : IDisposable
{
    /// <summary>The largest ordinary frame of the test networks: MTU 1500 plus the Ethernet header.</summary>
    private const int MaxFrame = 1514;

    private readonly Process _process;
    private readonly StringBuilder _error;
    private bool _stopped;

    private TsharkJudge(Process process, StringBuilder error, string file)
    {
        _process = process;
        _error = error;
        File = file;
    }

    public string File { get; }

    public static TsharkJudge Start(string ns, string device, string file, int maxSeconds = 120)
    {
        var process = Shell.Start("ip", ["netns", "exec", ns, "tshark", "-q", "-i", device, "-w", file, "-a", $"duration:{maxSeconds}"], out _, out var error);
        var judge = new TsharkJudge(process, error, file);
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(15))
        {
            lock (error)
            {
                if (error.ToString().Contains("Capturing on", StringComparison.Ordinal))
                {
                    return judge;
                }
            }

            if (process.HasExited)
            {
                break;
            }

            Thread.Sleep(20);
        }

        judge.Dispose();
        throw new InvalidOperationException($"tshark did not start capturing on {device} in {ns}: {error}");
    }

    /// <summary>
    /// Stops the capture (SIGINT to the tshark we started, by PID) and judges it. TCP reassembly is off: the
    /// capture sees frames that iptables then drops on INPUT, so a retransmission of data tshark already reassembled
    /// would be reported as a "reassembly error" although the stack resent the same bytes.
    /// </summary>
    public CaptureVerdict Stop()
    {
        StopCapture();
        // A frame longer than the MTU allows is a TCP super-segment (segmentation offload, seen whole on a TAP device): its
        // checksum field holds the pseudo-header sum only (CHECKSUM_PARTIAL), which the kernel never checks on delivery.
        // Its bytes are judged by the transfer's sha256; its IPv4 header and its form here still are. A frame the capture
        // holds only in part (cut when the capture stopped) cannot be judged. A TCP checksum of 0xFFFF where 0x0000 was
        // computed is the same sum (RFC 1624: ones' complement has two zeros) and receivers take it; the kernel's software
        // checksum (skb_checksum_help) writes 0xFFFF for a zero, so about one frame in 65,536 of the kernel's carries it.
        var bad = Shell.Run(TimeSpan.FromSeconds(120), "tshark", "-n", "-r", File, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
            "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", $"((tcp.checksum.status==Bad && !tcp.checksum.ffff && frame.len <= {MaxFrame}) || _ws.malformed || ip.checksum.status==Bad) && frame.cap_len == frame.len",
            "-T", "fields", "-e", "frame.number", "-e", "ip.src", "-e", "_ws.col.Info");
        if (bad.ExitCode != 0)
        {
            throw new InvalidOperationException($"tshark -r failed: {bad}");
        }

        var badLines = bad.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // Reassembly off here too: with it on, tshark reassembles each HTTP body (64 MiB) and this pass took ~47 s for a
        // 50,000-frame capture instead of ~2 s. Sequence analysis (retransmissions) does not need it.
        var retransmissions = Shell.Run(TimeSpan.FromSeconds(120), "tshark", "-n", "-r", File, "-o", "tcp.desegment_tcp_streams:FALSE",
            "-Y", "tcp.analysis.retransmission", "-T", "fields", "-e", "ip.src");
        var bySource = retransmissions.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .GroupBy(s => s.Trim())
            .ToDictionary(g => g.Key, g => g.Count());
        var frames = Shell.Run(TimeSpan.FromSeconds(60), "capinfos", "-c", "-M", File);
        var frameCount = 0;
        foreach (var line in frames.Output.Split('\n'))
        {
            if (line.StartsWith("Number of packets", StringComparison.Ordinal))
            {
                _ = int.TryParse(line.Split(':')[1].Trim(), out frameCount);
            }
        }

        var super = Shell.Run(TimeSpan.FromSeconds(120), "tshark", "-n", "-r", File, "-o", "tcp.desegment_tcp_streams:FALSE",
            "-Y", $"ip.src=={NetnsHarness.StackAddress} && tcp && frame.len > {MaxFrame}", "-T", "fields", "-e", "frame.number");
        var superFrames = super.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;

        var fromStack = badLines.Count(l => l.Split('\t') is [_, var source, ..] && source == NetnsHarness.StackAddress);
        return new CaptureVerdict(badLines.Length, fromStack, string.Join("\n", badLines.Take(5)), bySource.Values.Sum(), bySource, frameCount, superFrames);
    }

    private void StopCapture()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        if (!_process.HasExited)
        {
            _ = LinuxNative.kill(_process.Id, LinuxNative.SIGINT);
            if (!_process.WaitForExit(TimeSpan.FromSeconds(15)))
            {
                Shell.Kill(_process);
            }
        }

        _process.WaitForExit();
        _ = _error;
    }

    public void Dispose()
    {
        StopCapture();
        _process.Dispose();
    }
}
