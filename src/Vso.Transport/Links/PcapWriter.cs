using System.Buffers.Binary;
using Vso.Transport.Engine;

namespace Vso.Transport.Links;

/// <summary>
/// Writes Ethernet frames to a classic libpcap file (magic 0xa1b2c3d4, microsecond timestamps,
/// version 2.4, LINKTYPE_ETHERNET), readable by Wireshark, tshark and tcpdump. Timestamps come from an
/// <see cref="IClock"/>: with a <see cref="VirtualClock"/> the capture shows virtual time since the
/// epoch. Fields are written little-endian, as on the machines that write them; readers detect the byte
/// order from the magic. Buffered; no allocation per frame. Not thread-safe. Internal: users capture through
/// <see cref="CapturingLink(ILink, string, IClock?)"/>, which owns its writer.
/// </summary>
internal sealed class PcapWriter : IDisposable
{
    public const uint Magic = 0xA1B2_C3D4;
    public const ushort VersionMajor = 2;
    public const ushort VersionMinor = 4;
    public const int DefaultSnapLength = 65535;
    public const uint LinkTypeEthernet = 1;
    public const int FileHeaderLength = 24;
    public const int RecordHeaderLength = 16;

    private readonly Stream _stream;
    private readonly IClock _clock;
    private readonly bool _leaveOpen;
    private bool _disposed;

    /// <summary>Creates (or truncates) <paramref name="path"/> and writes the file header.</summary>
    public PcapWriter(string path, IClock clock, int snapLength = DefaultSnapLength)
        : this(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 1 << 16), clock, snapLength, leaveOpen: false)
    {
    }

    /// <summary>Writes the file header to <paramref name="stream"/>; frames follow it.</summary>
    public PcapWriter(Stream stream, IClock clock, int snapLength = DefaultSnapLength, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(clock);
        ArgumentOutOfRangeException.ThrowIfLessThan(snapLength, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(snapLength, DefaultSnapLength);
        _stream = stream;
        _clock = clock;
        _leaveOpen = leaveOpen;
        SnapLength = snapLength;

        Span<byte> header = stackalloc byte[FileHeaderLength];
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], VersionMajor);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], VersionMinor);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], 0); // thiszone: timestamps are UTC
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], 0); // sigfigs
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], (uint)snapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(header[20..], LinkTypeEthernet);
        _stream.Write(header);
    }

    /// <summary>Frames longer than this are truncated in the file (their original length is kept).</summary>
    public int SnapLength { get; }

    public long FramesWritten { get; private set; }

    /// <summary>Records a frame stamped with the clock's current time.</summary>
    public void WriteFrame(ReadOnlySpan<byte> frame) => WriteFrame(frame, _clock.NowMicroseconds);

    /// <summary>Records a frame stamped <paramref name="timestampMicroseconds"/> (negative times are written as zero).</summary>
    public void WriteFrame(ReadOnlySpan<byte> frame, long timestampMicroseconds)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var timestamp = Math.Max(0, timestampMicroseconds);
        var captured = Math.Min(frame.Length, SnapLength);
        Span<byte> header = stackalloc byte[RecordHeaderLength];
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)(timestamp / 1_000_000));
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)(timestamp % 1_000_000));
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], (uint)captured);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], (uint)frame.Length);
        _stream.Write(header);
        _stream.Write(frame[..captured]);
        FramesWritten++;
    }

    /// <summary>Pushes buffered records to the underlying stream.</summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _stream.Flush();
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _stream.Flush();
        if (!_leaveOpen)
        {
            _stream.Dispose();
        }
    }
}
