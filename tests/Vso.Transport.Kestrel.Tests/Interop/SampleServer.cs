using System.Diagnostics;
using System.Text;
using Vso.Transport.Native;
using Vso.Transport.Tests.Interop;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// The HelloServer sample as a child process inside a network namespace (`ip netns exec NS dotnet ...`, which execs,
/// so the PID is the server's). Configured with environment variables only; stopped by SIGTERM to its PID, killed by
/// its PID if it does not stop.
/// </summary>
internal sealed class SampleServer : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output;
    private readonly StringBuilder _error;

    private SampleServer(Process process, StringBuilder output, StringBuilder error)
    {
        _process = process;
        _output = output;
        _error = error;
    }

    public int Pid => _process.Id;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public string Error
    {
        get
        {
            lock (_error)
            {
                return _error.ToString();
            }
        }
    }

    /// <summary>Characters written to stdout and stderr so far (the server's log; ASCII, so bytes).</summary>
    public long LogLength
    {
        get
        {
            long length;
            lock (_output)
            {
                length = _output.Length;
            }

            lock (_error)
            {
                return length + _error.Length;
            }
        }
    }

    /// <summary>The directory holding Vso.Transport.sln, above the test assembly.</summary>
    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vso.Transport.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Vso.Transport.sln not found above the test assembly.");
    }

    public static string SampleDirectory()
    {
        var configuration = AppContext.BaseDirectory.Contains("/Debug/", StringComparison.Ordinal) ? "Debug" : "Release";
        var path = Path.Combine(RepositoryRoot(), "samples", "Vso.Samples.HelloServer", "bin", configuration, "net10.0");
        if (!File.Exists(Path.Combine(path, "Vso.Samples.HelloServer.dll")))
        {
            throw new InvalidOperationException($"The sample is not built at {path}: build the solution first.");
        }

        return path;
    }

    public static SampleServer Start(string ns, IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        var dir = SampleDirectory();
        var info = new ProcessStartInfo("ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = dir,
        };
        foreach (var a in (string[])["netns", "exec", ns, "dotnet", Path.Combine(dir, "Vso.Samples.HelloServer.dll"), .. arguments])
        {
            info.ArgumentList.Add(a);
        }

        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        var output = new StringBuilder();
        var error = new StringBuilder();
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (error) { error.AppendLine(e.Data); } } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new SampleServer(process, output, error);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!server.Output.Contains("try: curl", StringComparison.Ordinal))
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                var text = $"The sample did not start (exited: {process.HasExited}).\n--- stdout\n{server.Output}\n--- stderr\n{server.Error}";
                server.Dispose();
                throw new InvalidOperationException(text);
            }

            Thread.Sleep(50);
        }

        return server;
    }

    /// <summary>SIGTERM (graceful shutdown); returns the exit code, or null if it did not exit in time.</summary>
    public int? Stop(TimeSpan timeout)
    {
        if (!_process.HasExited)
        {
            _ = LinuxNative.kill(_process.Id, 15);
        }

        if (!_process.WaitForExit(timeout))
        {
            return null;
        }

        _process.WaitForExit();
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            try
            {
                _process.Kill();
                _process.WaitForExit(10_000);
            }
            catch (InvalidOperationException)
            {
            }
        }

        _process.Dispose();
    }
}
