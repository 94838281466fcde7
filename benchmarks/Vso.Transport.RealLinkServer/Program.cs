using System.Runtime.InteropServices;
using Vso.Transport.Api;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Tests.Interop;
using Vso.Transport.Wire;

// The interop tests' HTTP responder on a real link, as a process for benchmarks/load/*.sh:
//   Vso.Transport.RealLinkServer afpacket <device> <stack address> [port]
//   Vso.Transport.RealLinkServer tap <device> <stack address> <kernel address/prefix> [port]
//   Vso.Transport.RealLinkServer afxdp <device> <stack address> [port]
// Runs until SIGINT or SIGTERM. Prints "ready" on stdout once listening.
// VSO_AFPACKET_RING=V3 selects the TPACKET_V3 receive ring instead of the default V2, to compare the two.
// afxdp: the UMEM covers a pinned pool the responder sends from (payload in place); VSO_AFXDP_UMEM=private gives the
// socket a private UMEM instead (every frame copied into it), to compare the two.
if (args.Length < 3)
{
    Console.Error.WriteLine("usage: afpacket DEV ADDRESS [PORT] | tap DEV ADDRESS KERNEL_ADDRESS/PREFIX [PORT] | afxdp DEV ADDRESS [PORT]");
    return 2;
}

var kind = args[0];
var device = args[1];
var address = Ipv4Address.Parse(args[2]);
ILink link;
int portIndex;
Vso.MemoryPinning.PinnedBlockPool? pool = null;
try
{
    if (kind == "afxdp")
    {
        if (Environment.GetEnvironmentVariable("VSO_AFXDP_UMEM") != "private")
        {
            pool = new Vso.MemoryPinning.PinnedBlockPool(new Vso.MemoryPinning.PinnedBlockPoolOptions { ContiguousBytes = 64 << 20 });
        }

        link = new AfXdpLink(new AfXdpLinkOptions { InterfaceName = device, Address = address, UmemPool = pool });
        portIndex = 3;
    }
    else if (kind == "afpacket")
    {
        var ring = Enum.Parse<AfPacketReceiveRing>(Environment.GetEnvironmentVariable("VSO_AFPACKET_RING") ?? "V2", ignoreCase: true);
        link = new AfPacketLink(new AfPacketLinkOptions { InterfaceName = device, ReceiveRing = ring });
        portIndex = 3;
    }
    else
    {
        var parts = args[3].Split('/');
        link = new TapLink(new TapLinkOptions
        {
            Name = device,
            Create = true,
            Mtu = 1500,
            KernelAddress = Ipv4Address.Parse(parts[0]),
            KernelPrefixLength = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture),
        });
        portIndex = 4;
    }
}
catch (LinkException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 1;
}

var port = args.Length > portIndex ? ushort.Parse(args[portIndex], System.Globalization.CultureInfo.InvariantCulture) : (ushort)8080;
using var stop = new ManualResetEventSlim();
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
using (link)
using (var stack = new VsoStack(link, new VsoStackOptions { Address = address, PrefixLength = 24, Tcp = new TcpSettings { Nagle = false } }))
{
    stack.Start();
    var http = new TinyHttpServer(stack, port) { SendPool = pool };
    Console.WriteLine("ready");
    stop.Wait();
    await http.DisposeAsync();
    if (link is AfXdpLink xdp)
    {
        Console.Error.WriteLine($"AF_XDP: {xdp.FramesSentInPlace} frames sent in place, {xdp.FramesCopied} copied");
    }
}

pool?.Dispose();

return 0;
