using System.Diagnostics;
using System.Text;
using Vso.Transport.Tests.Interop;

namespace Vso.Transport.Kestrel.Tests.Interop;

/// <summary>
/// A command running beside the test inside a namespace (`ip netns exec NS ...`, which execs, so the PID is the
/// command's). Its output can be read while it runs. <see cref="Wait"/> kills it by its PID, with its children, when it
/// overruns, and so does <see cref="Dispose"/> when it is left behind by a failure: a test leaves no process.
/// </summary>
internal sealed class BackgroundCommand : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output;
    private readonly StringBuilder _error;

    private BackgroundCommand(Process process, StringBuilder output, StringBuilder error, string commandLine)
    {
        _process = process;
        _output = output;
        _error = error;
        CommandLine = commandLine;
    }

    public string CommandLine { get; }

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

    public static BackgroundCommand StartIn(string ns, string file, params string[] arguments)
    {
        var process = Shell.Start("ip", ["netns", "exec", ns, file, .. arguments], out var output, out var error);
        return new BackgroundCommand(process, output, error, $"{file} {string.Join(' ', arguments)}");
    }

    /// <summary>Waits until stdout holds <paramref name="text"/>; false if the command exited or time ran out first.</summary>
    public bool WaitForOutput(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                _process.WaitForExit(); // the last output lines
                return Output.Contains(text, StringComparison.Ordinal);
            }

            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            Thread.Sleep(50);
        }

        return true;
    }

    /// <summary>Waits for the exit; a command that overruns <paramref name="timeout"/> is killed by its PID.</summary>
    public CommandResult Wait(TimeSpan timeout)
    {
        var finished = _process.WaitForExit(timeout);
        if (!finished)
        {
            Shell.Kill(_process);
        }

        _process.WaitForExit();
        return new CommandResult(finished ? _process.ExitCode : -1, Output, Error, !finished);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Shell.Kill(_process);
            _ = _process.WaitForExit(10_000);
        }

        _process.Dispose();
    }
}
