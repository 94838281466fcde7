using System.Diagnostics;
using System.Text;

namespace Vso.Transport.Tests.Interop;

/// <summary>The outcome of a command.</summary>
internal sealed record CommandResult(int ExitCode, string Output, string Error, bool TimedOut)
{
    public override string ToString() => $"exit {ExitCode}{(TimedOut ? " (timed out)" : "")}: {Output.Trim()} {Error.Trim()}";
}

/// <summary>Runs commands with a time limit; a command that overruns is killed by its PID (and its children).</summary>
internal static class Shell
{
    public static CommandResult Run(TimeSpan timeout, string file, params string[] arguments)
    {
        using var process = Start(file, arguments, out var output, out var error);
        var finished = process.WaitForExit(timeout);
        if (!finished)
        {
            Kill(process);
        }

        process.WaitForExit();
        return new CommandResult(finished ? process.ExitCode : -1, output.ToString(), error.ToString(), !finished);
    }

    public static Task<CommandResult> RunAsync(TimeSpan timeout, string file, params string[] arguments) =>
        Task.Run(() => Run(timeout, file, arguments));

    /// <summary>Runs a command and throws if it fails.</summary>
    public static string Check(string file, params string[] arguments)
    {
        var result = Run(TimeSpan.FromSeconds(30), file, arguments);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"`{file} {string.Join(' ', arguments)}` failed: {result}");
        }

        return result.Output;
    }

    public static Process Start(string file, string[] arguments, out StringBuilder output, out StringBuilder error)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        var o = new StringBuilder();
        var e = new StringBuilder();
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, args) => { if (args.Data is not null) { lock (o) { o.AppendLine(args.Data); } } };
        process.ErrorDataReceived += (_, args) => { if (args.Data is not null) { lock (e) { e.AppendLine(args.Data); } } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        output = o;
        error = e;
        return process;
    }

    public static void Kill(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already exited
        }
    }
}
