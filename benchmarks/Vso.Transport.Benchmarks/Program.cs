using BenchmarkDotNet.Running;
using Vso.Transport.Benchmarks;

if (args.Length > 0 && args[0] == "--probe")
{
    AllocationProbe.Run();
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(ChecksumBenchmarks).Assembly).Run(args);
