using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Vso.Transport.Kestrel.Tests.Interop;
using Vso.Transport.Links;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>
/// Every key of the "Vso" section, whatever its kind, fails through the validator as
/// <c>Vso:Key = 'value' is invalid: what the key accepts.</c> (issue 15 item 1): values ConfigurationBinder cannot
/// convert included, every bad key reported at once, and the sample exits with code 1 and the message last.
/// </summary>
public sealed class ConfigurationErrorTests
{
    [Theory]
    [InlineData("Backend", "Xdp", "Vso:Backend = 'Xdp' is invalid: use AfPacket, Tap or AfXdp.")]
    [InlineData("Backend", "1", "Vso:Backend = '1' is invalid: use AfPacket, Tap or AfXdp.")]
    [InlineData("AfXdp:Mode", "Zero", "Vso:AfXdp:Mode = 'Zero' is invalid: use Auto, ZeroCopy, Copy or Skb.")]
    [InlineData("Tcp:CongestionControl", "bbr", "Vso:Tcp:CongestionControl = 'bbr' is invalid: use NewReno or Cubic.")]
    [InlineData("Tcp:SynCookies", "sometimes", "Vso:Tcp:SynCookies = 'sometimes' is invalid: use Auto, Always or Never.")]
    [InlineData("IdentifyMode", "Zero", "Vso:IdentifyMode = 'Zero' is invalid: use Pinned or Copy.")]
    public void An_enum_key_names_its_values(string key, string value, string expected) =>
        Assert.Equal([expected], Failures(key, value));

    [Theory]
    [InlineData("Tcp:Backlog", "lots", "Vso:Tcp:Backlog = 'lots' is invalid: use 1 to 65535.")]
    [InlineData("Engines", "many", "Vso:Engines = 'many' is invalid: use 0 (automatic) or 1 to 64 engine threads.")]
    [InlineData("Tcp:Backlog", "0", "Vso:Tcp:Backlog = '0' is invalid: use 1 to 65535.")]
    [InlineData("Tcp:Backlog", "99999999999", "Vso:Tcp:Backlog = '99999999999' is invalid: use 1 to 65535.")]
    [InlineData("AfXdp:Queue", "-1", "Vso:AfXdp:Queue = '-1' is invalid: use a receive queue of the interface, 0 to 65535 (`ethtool -l DEV` lists them).")]
    [InlineData("AfXdp:RingSize", "1000", "Vso:AfXdp:RingSize = '1000' is invalid: use a power of two from 64 to 32768, such as 2048.")]
    [InlineData("Tcp:ReceiveBufferSize", "1MB", "Vso:Tcp:ReceiveBufferSize = '1MB' is invalid: use 2048 to 1073741824 bytes.")]
    [InlineData("Tcp:ReceiveBufferSize", "1024", "Vso:Tcp:ReceiveBufferSize = '1024' is invalid: use 2048 to 1073741824 bytes.")]
    [InlineData("Mtu", "jumbo", "Vso:Mtu = 'jumbo' is invalid: use 576 to 65521, such as 1500, or leave it empty.")]
    [InlineData("MaxWriteBufferSize", "2 MiB", "Vso:MaxWriteBufferSize = '2 MiB' is invalid: use at least 65536 bytes, well above a typical flush (2097152 by default).")]
    public void A_number_key_names_its_range(string key, string value, string expected) =>
        Assert.Equal([expected], Failures(key, value));

    [Theory]
    [InlineData("Tcp:MinRto", "soon", "Vso:Tcp:MinRto = 'soon' is invalid: use a duration written [d.]hh:mm:ss[.fffffff], such as 00:00:00.2 for 200 ms (a positive time).")]
    [InlineData("Tcp:MinRto", "200", "Vso:Tcp:MinRto = '200' is invalid: use a duration written [d.]hh:mm:ss[.fffffff], such as 00:00:00.2 for 200 ms (a positive time).")]
    [InlineData("Tcp:DelayedAck", "40ms", "Vso:Tcp:DelayedAck = '40ms' is invalid: use a duration written [d.]hh:mm:ss[.fffffff], such as 00:00:00.2 for 200 ms (0 to 200 ms).")]
    [InlineData("Tcp:DelayedAck", "00:00:01", "Vso:Tcp:DelayedAck = '00:00:01' is invalid: use 0 to 200 ms.")]
    public void A_duration_key_names_its_form_and_range(string key, string value, string expected) =>
        Assert.Equal([expected], Failures(key, value));

    [Theory]
    [InlineData("Address", "198.18.0.2", "Vso:Address = '198.18.0.2' is invalid: give the stack's IPv4 address with its prefix length, such as 198.18.0.2/24 (Vso__Address=198.18.0.2/24).")]
    [InlineData("Address", "198.18.0.2/33", "Vso:Address = '198.18.0.2/33' is invalid: give the stack's IPv4 address with its prefix length, such as 198.18.0.2/24 (Vso__Address=198.18.0.2/24).")]
    [InlineData("Tap:HostAddress", "198.18.0.1/32", "Vso:Tap:HostAddress = '198.18.0.1/32' is invalid: give the kernel side's address with a prefix length of 1 to 31, such as 198.18.0.1/24, or leave it empty for none.")]
    public void A_cidr_key_names_its_form(string key, string value, string expected) =>
        Assert.Equal([expected], Failures(key, value));

    [Theory]
    [InlineData("Tcp:Sack", "yes", "Vso:Tcp:Sack = 'yes' is invalid: use true or false.")]
    [InlineData("Tap:Create", "1", "Vso:Tap:Create = '1' is invalid: use true or false.")]
    [InlineData("FinOnError", "on", "Vso:FinOnError = 'on' is invalid: use true or false.")]
    [InlineData("AfPacket:SegmentationOffload", "off", "Vso:AfPacket:SegmentationOffload = 'off' is invalid: use true or false.")]
    [InlineData("Tap:SegmentationOffload", "no", "Vso:Tap:SegmentationOffload = 'no' is invalid: use true or false.")]
    public void A_bool_key_names_true_and_false(string key, string value, string expected) =>
        Assert.Equal([expected], Failures(key, value));

    [Fact]
    public void Every_bad_key_is_reported_not_only_the_first()
    {
        var failures = Failures(("Tcp:CongestionControl", "bbr"), ("Tcp:MinRto", "soon"), ("Tcp:Nagle", "maybe"), ("Tcp:Backlog", "0"));
        Assert.Equal(
            [
                "Vso:Tcp:CongestionControl = 'bbr' is invalid: use NewReno or Cubic.",
                "Vso:Tcp:MinRto = 'soon' is invalid: use a duration written [d.]hh:mm:ss[.fffffff], such as 00:00:00.2 for 200 ms (a positive time).",
                "Vso:Tcp:Nagle = 'maybe' is invalid: use true or false.",
                "Vso:Tcp:Backlog = '0' is invalid: use 1 to 65535.",
            ],
            failures);
    }

    [Fact]
    public void Good_values_of_every_kind_are_bound()
    {
        var o = Bind(
            ("Backend", "tap"), ("Tcp:CongestionControl", "cubic"), ("Tcp:MinRto", "00:00:00.1"), ("Tcp:Backlog", " 64 "),
            ("Tcp:Sack", "False"), ("Tcp:LossRecovery", "NewReno"), ("Mtu", ""), ("Tcp:MemoryLimit", "0"));
        Assert.Equal(VsoBackend.Tap, o.Backend);
        Assert.Equal(VsoCongestionControl.Cubic, o.Tcp.CongestionControl);
        Assert.Equal(TimeSpan.FromMilliseconds(100), o.Tcp.MinRto);
        Assert.Equal(64, o.Tcp.Backlog);
        Assert.False(o.Tcp.Sack);
        Assert.Null(o.Mtu);
        Assert.Equal(0, o.Tcp.MemoryLimit);
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData("false", false)]
    [InlineData("True", true)]
    public void Tap_segmentation_offload_is_on_by_default_and_reaches_the_link(string? value, bool expected)
    {
        var o = value is null ? Bind() : Bind(("Tap:SegmentationOffload", value));
        Assert.Equal(expected, o.Tap.SegmentationOffload);
        var tap = Assert.IsType<TapLinkOptions>(StackFactory.CreateLinkOptions(o));
        Assert.Equal(expected, tap.SegmentationOffload);
        Assert.Equal("vso0", tap.Name);
    }

    /// <summary>Vso:Engines reaches the stack on AfPacket, Tap and AfXdp (one queue per engine); a capture keeps one.</summary>
    [Theory]
    [InlineData("Tap", "", 2)]
    [InlineData("AfPacket", "", 2)]
    [InlineData("AfXdp", "", 2)]
    [InlineData("Tap", "/tmp/vso.pcap", 1)]
    [InlineData("AfXdp", "/tmp/vso.pcap", 1)]
    public void Engines_apply_to_Tap_AfPacket_and_AfXdp(string backend, string capture, int expected)
    {
        var o = Bind(("Backend", backend), ("Engines", "2"), ("Capture:PcapPath", capture));
        Assert.Equal(2, o.Engines);
        Assert.Equal(expected, StackFactory.EngineCount(o));
    }

    /// <summary>
    /// Issue 13 item 1: Vso:Engines defaults to 0, one engine per processor but one (left to the thread pool) where the
    /// link gives each its own queue (AfPacket, a Tap device the stack creates); one on a device with one queue (an existing single-queue device, an
    /// interface with one receive queue for AfXdp), and a divisor of AfXdp:Queues when several are named.
    /// </summary>
    [Theory]
    [InlineData("AfPacket", "lo", "true", "1", -1)]
    [InlineData("Tap", "vso0", "true", "1", -1)]
    [InlineData("Tap", "lo", "false", "1", 1)]
    [InlineData("AfXdp", "lo", "true", "1", 1)]
    [InlineData("AfXdp", "lo", "true", "6", 2)]
    public void Engines_default_to_one_per_processor_where_the_link_has_a_queue_for_each(string backend, string name, string create, string xdpQueues, int expected)
    {
        var o = Bind(("Backend", backend), ("Interface", name), ("Tap:Create", create), ("AfXdp:Queues", xdpQueues), ("AfXdp:UmemBytes", "0"));
        Assert.Equal(0, o.Engines);
        var processors = Math.Clamp(Environment.ProcessorCount - 1, 1, 64);
        var engines = StackFactory.EngineCount(o);
        if (expected == -1)
        {
            Assert.Equal(processors, engines);
        }
        else if (backend == "AfXdp" && xdpQueues == "6")
        {
            // The largest divisor of 6 within the processor count.
            Assert.Equal(processors >= 6 ? 6 : processors >= 3 ? 3 : processors >= 2 ? 2 : 1, engines);
        }
        else
        {
            Assert.Equal(expected, engines);
        }
    }

    /// <summary>A TAP device that exists but has one queue cannot serve several engines: the error names the keys, the value and the fixes.</summary>
    [Fact]
    public void Engines_on_a_single_queue_TAP_device_fail_naming_the_key_and_the_fixes()
    {
        var o = Bind(("Engines", "2"), ("Interface", "lo"), ("Tap:Create", "false"));
        var error = Assert.ThrowsAny<IOException>(() => StackFactory.CreateStack(o, StackFactory.ToStackOptions(o), NullLoggerFactory.Instance));
        Assert.Contains("Vso:Backend = 'Tap', Vso:Interface = 'lo', Vso:Engines = '2'", error.Message, StringComparison.Ordinal);
        Assert.Contains("Engines = 1", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A value that does not parse is answered with the words of the key's range check, for every numeric key.</summary>
    [Theory]
    [InlineData("Mtu", "100")]
    [InlineData("Tcp:Backlog", "0")]
    [InlineData("Tcp:ReceiveBufferSize", "1")]
    [InlineData("Tcp:MemoryLimit", "1")]
    [InlineData("Tcp:MaxHalfOpen", "0")]
    [InlineData("Pinning:BlockSize", "3000")]
    [InlineData("MaxWriteBufferSize", "1")]
    [InlineData("MaxReadBufferSize", "1")]
    public void Unparsable_and_out_of_range_numbers_get_the_same_answer(string key, string outOfRange)
    {
        static string Fix(string message) => message[(message.IndexOf(" is invalid: ", StringComparison.Ordinal) + 13)..].Replace(", or leave it empty", "", StringComparison.Ordinal);
        var unparsable = Assert.Single(Failures(key, "x"));
        var ranged = Assert.Single(Failures(key, outOfRange));
        Assert.Equal(Fix(ranged), Fix(unparsable));
    }

    /// <summary>The sample as an operator runs it: exit code 1, the message as its last line, no crash report.</summary>
    [Theory]
    [InlineData("--Vso:Backend=Bogus", "Vso:Backend = 'Bogus' is invalid: use AfPacket, Tap or AfXdp.")]
    [InlineData("--Vso:Tcp:MinRto=soon", "Vso:Tcp:MinRto = 'soon' is invalid: use a duration written [d.]hh:mm:ss[.fffffff], such as 00:00:00.2 for 200 ms (a positive time).")]
    [InlineData("--Vso:Address=198.18.0.2", "Vso:Address = '198.18.0.2' is invalid: give the stack's IPv4 address with its prefix length, such as 198.18.0.2/24 (Vso__Address=198.18.0.2/24).")]
    [InlineData("--Metrics=Graphite", "Metrics = 'Graphite' is invalid: use None, Prometheus or Otlp.")]
    public async Task The_sample_exits_with_code_1_and_the_message_last(string argument, string expected)
    {
        var dir = SampleServer.SampleDirectory();
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = dir,
        };
        info.ArgumentList.Add(Path.Combine(dir, "Vso.Samples.HelloServer.dll"));
        info.ArgumentList.Add(argument);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        var output = await stdout + await stderr;

        Assert.Equal(1, process.ExitCode);
        Assert.Equal(expected, (await stderr).TrimEnd('\n').Split('\n')[^1]);
        Assert.Equal("", (await stdout).Trim());
        Assert.DoesNotContain("Unhandled", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
    }

    private static List<string> Failures(string key, string value) => Failures((key, value));

    private static List<string> Failures(params (string Key, string Value)[] values)
    {
        var error = Assert.Throws<OptionsValidationException>(() => Bind(values));
        return [.. error.Failures];
    }

    // As UseVsoTransport binds at start: the options are resolved, which runs the binder and then the validator.
    private static VsoTransportOptions Bind(params (string Key, string Value)[] values)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Vso:Backend"] = "Tap",
            ["Vso:Interface"] = "vso0",
            ["Vso:Address"] = "198.18.0.2/24",
        };
        foreach (var (key, value) in values)
        {
            settings["Vso:" + key] = value;
        }

        var builder = WebApplication.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseVsoTransport();
        using var app = builder.Build();
        return app.Services.GetRequiredService<IOptions<VsoTransportOptions>>().Value;
    }
}
