namespace Vso.Transport.Links;

/// <summary>A piece of pinned memory that a link reads directly when it sends a frame (scatter-gather).</summary>
internal readonly record struct GatherSegment(nint Address, int Length);
