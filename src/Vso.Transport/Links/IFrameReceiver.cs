namespace Vso.Transport.Links;

/// <summary>Consumes received frames in place; the span must not be kept after the call.</summary>
public interface IFrameReceiver
{
    void OnFrame(ReadOnlySpan<byte> frame);
}
