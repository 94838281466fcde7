using BenchmarkDotNet.Running;
using Vso.Transport.Benchmarks;

if (args.Length > 0 && args[0] == "--probe")
{
    AllocationProbe.Run();
    return;
}

if (args.Length > 0 && args[0] == "--roundtrip")
{
    await RoundTripProbe.RunAsync(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 3000);
    return;
}

if (args.Length > 0 && args[0] == "--connections")
{
    ConnectionProbe.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 2000);
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(ChecksumBenchmarks).Assembly).Run(args);
