using Vso.Transport.Native;

namespace Vso.Transport.Links;

/// <summary>
/// A real link could not be opened or configured. The message says what to do: which capability is missing
/// and how to grant it, which interface does not exist or is down.
/// </summary>
internal sealed class LinkException : IOException
{
    public LinkException()
    {
    }

    public LinkException(string message)
        : base(message)
    {
    }

    public LinkException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public LinkException(string message, int errno)
        : base(message)
    {
        Errno = errno;
    }

    /// <summary>The Linux errno behind the failure, or 0.</summary>
    public int Errno { get; }

    internal const string GrantHint =
        "Run as root, or grant the capabilities to the program: `sudo setcap cap_net_raw,cap_net_admin+ep <program>` " +
        "(for `dotnet app.dll` that is the dotnet host; an apphost or a single-file publish is better), " +
        "or in a container add `--cap-add NET_RAW --cap-add NET_ADMIN`.";

    internal static LinkException FromErrno(int errno, string what, string capability = "CAP_NET_ADMIN") => errno switch
    {
        Native.Errno.EPERM or Native.Errno.EACCES => new LinkException($"{what} failed: {Native.Errno.Describe(errno)}. This needs {capability}. {GrantHint}", errno),
        Native.Errno.ENODEV or Native.Errno.ENXIO => new LinkException($"{what} failed: {Native.Errno.Describe(errno)}: the interface does not exist in this network namespace (see `ip link`).", errno),
        Native.Errno.ENETDOWN => new LinkException($"{what} failed: {Native.Errno.Describe(errno)}: the interface is down (`ip link set DEV up`).", errno),
        _ => new LinkException($"{what} failed: {Native.Errno.Describe(errno)}.", errno),
    };
}
