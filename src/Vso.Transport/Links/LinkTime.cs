namespace Vso.Transport.Links;

internal static class LinkTime
{
    /// <summary>Ethernet II header: destination, source, EtherType. Frames carry no preamble and no FCS.</summary>
    public const int EthernetHeaderLength = 14;

    /// <summary>Whole microseconds in <paramref name="span"/>, rounded down (the clock's resolution).</summary>
    public static long ToMicroseconds(TimeSpan span) => span.Ticks / TimeSpan.TicksPerMicrosecond;
}
