namespace Vso.Transport.Links;

/// <summary>Consumes received frames in place; the span must not be kept after the call.</summary>
internal interface IFrameReceiver
{
    void OnFrame(ReadOnlySpan<byte> frame);
}
