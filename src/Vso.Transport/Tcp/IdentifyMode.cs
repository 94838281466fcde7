namespace Vso.Transport.Tcp;

/// <summary>How the host hands the bytes of a descriptor to the sender when a segment is built.</summary>
public enum IdentifyMode
{
    /// <summary>The link gathers straight from the host's pinned memory under a pin lease: no user-space copy.</summary>
    Pinned,

    /// <summary>The host copies the bytes into the link's frame buffer at send time: exactly one copy.</summary>
    Copy,
}
