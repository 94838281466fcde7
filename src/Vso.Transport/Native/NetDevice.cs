using System.Runtime.InteropServices;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Native;

/// <summary>Queries and configures a network interface of the calling thread's namespace through SIOC* ioctls.</summary>
internal static unsafe class NetDevice
{
    /// <summary>Returns the interface index, or throws a <see cref="LinkException"/> naming the interface.</summary>
    public static int IndexOf(string name)
    {
        var index = LinuxNative.if_nametoindex(name);
        if (index == 0)
        {
            throw new LinkException(
                $"Network interface '{name}' does not exist in this network namespace. List interfaces with `ip link` " +
                "(or `ip netns exec NAME ip link` for a namespace) and check the name.",
                Errno.ENODEV);
        }

        return (int)index;
    }

    public static short GetFlags(int socket, string name)
    {
        var r = IfReq.For(name);
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCGIFFLAGS, &r), name, "SIOCGIFFLAGS");
        return r.Flags;
    }

    public static void SetUp(int socket, string name)
    {
        var r = IfReq.For(name);
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCGIFFLAGS, &r), name, "SIOCGIFFLAGS");
        r.Flags |= LinuxNative.IFF_UP;
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCSIFFLAGS, &r), name, "SIOCSIFFLAGS");
    }

    public static int GetMtu(int socket, string name)
    {
        var r = IfReq.For(name);
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCGIFMTU, &r), name, "SIOCGIFMTU");
        return r.IntValue;
    }

    public static void SetMtu(int socket, string name, int mtu)
    {
        var r = IfReq.For(name);
        r.IntValue = mtu;
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCSIFMTU, &r), name, "SIOCSIFMTU");
    }

    public static MacAddress GetHardwareAddress(int socket, string name)
    {
        var r = IfReq.For(name);
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCGIFHWADDR, &r), name, "SIOCGIFHWADDR");
        Span<byte> mac = stackalloc byte[6];
        for (var i = 0; i < 6; i++)
        {
            mac[i] = r.HardwareAddressByte(i);
        }

        return MacAddress.Read(mac);
    }

    /// <summary>Gives the kernel side of the interface an IPv4 address and prefix (SIOCSIFADDR, SIOCSIFNETMASK).</summary>
    public static void SetAddress(int socket, string name, Ipv4Address address, int prefixLength)
    {
        Span<byte> bytes = stackalloc byte[4];
        address.Write(bytes);
        var r = IfReq.For(name);
        r.SetInetAddress(bytes);
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCSIFADDR, &r), name, "SIOCSIFADDR");
        var mask = prefixLength == 0 ? 0u : uint.MaxValue << (32 - prefixLength);
        bytes[0] = (byte)(mask >> 24);
        bytes[1] = (byte)(mask >> 16);
        bytes[2] = (byte)(mask >> 8);
        bytes[3] = (byte)mask;
        r = IfReq.For(name);
        r.SetInetAddress(bytes);
        Check(LinuxNative.ioctl(socket, LinuxNative.SIOCSIFNETMASK, &r), name, "SIOCSIFNETMASK");
    }

    /// <summary>Throws unless the interface is administratively up.</summary>
    public static void EnsureUp(int socket, string name)
    {
        if ((GetFlags(socket, name) & LinuxNative.IFF_UP) == 0)
        {
            throw new LinkException($"Network interface '{name}' is down. Bring it up first: `ip link set {name} up`.", Errno.ENETDOWN);
        }
    }

    public static void Check(int result, string name, string operation)
    {
        if (result < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw LinkException.FromErrno(errno, $"{operation} on interface '{name}'");
        }
    }
}
