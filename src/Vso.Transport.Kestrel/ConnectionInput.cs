using System.IO.Pipelines;

namespace Vso.Transport.Kestrel;

/// <summary>
/// <c>Transport.Input</c> as the application holds it: the connection's own reader in front of the pooled pipe's, cut off
/// when the connection is disposed, so that a reference kept past DisposeAsync can never read the bytes of the next
/// connection the pooled pipe serves. Reading then throws <see cref="ObjectDisposedException"/>; completing again is a no-op.
/// </summary>
internal sealed class ConnectionInput(PipeReader reader) : PipeReader
{
    private volatile PipeReader? _reader = reader;

    /// <summary>The connection is disposed: from now on this reader reaches nothing.</summary>
    public void Detach() => _reader = null;

    private PipeReader Reader => _reader ?? throw new ObjectDisposedException(nameof(ConnectionInput), "The connection was disposed; its input can no longer be read.");

    public override bool TryRead(out ReadResult result) => Reader.TryRead(out result);

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => Reader.ReadAsync(cancellationToken);

    public override void AdvanceTo(SequencePosition consumed) => Reader.AdvanceTo(consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => Reader.AdvanceTo(consumed, examined);

    public override void CancelPendingRead() => Reader.CancelPendingRead();

    public override void Complete(Exception? exception = null) => _reader?.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => _reader?.CompleteAsync(exception) ?? ValueTask.CompletedTask;
}
