using Vso.Transport.Native;

namespace Vso.Transport.Kestrel.Tests;

/// <summary>A fact that runs only as root (network namespaces, AF_PACKET, TAP); CI runs as root.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (LinuxNative.geteuid() != 0)
        {
            Skip = "Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN).";
        }
    }
}
