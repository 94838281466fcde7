using System.IO.Pipelines;

namespace Vso.Transport.Kestrel;

/// <summary>
/// <c>Transport.Output</c> as the application holds it: the connection's own writer in front of the pooled
/// <see cref="VsoOutputWriter"/>, cut off when the connection is disposed, so that a reference kept past DisposeAsync can
/// never write into the next connection the pooled writer serves. Writing then throws <see cref="ObjectDisposedException"/>;
/// completing again is a no-op.
/// </summary>
internal sealed class ConnectionOutput(VsoOutputWriter writer) : PipeWriter
{
    private volatile VsoOutputWriter? _writer = writer;

    /// <summary>The connection is disposed: from now on this writer reaches nothing.</summary>
    public void Detach() => _writer = null;

    private VsoOutputWriter Writer => _writer ?? throw new ObjectDisposedException(nameof(ConnectionOutput), "The connection was disposed; its output can no longer be written.");

    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes => _writer?.UnflushedBytes ?? 0;

    public override Memory<byte> GetMemory(int sizeHint = 0) => Writer.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => Writer.GetSpan(sizeHint);

    public override void Advance(int bytes) => Writer.Advance(bytes);

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => Writer.FlushAsync(cancellationToken);

    public override void CancelPendingFlush() => Writer.CancelPendingFlush();

    public override void Complete(Exception? exception = null) => _writer?.Complete(exception);
}
