using System.Buffers;
using Vso.Transport.Api;

namespace Vso.Transport.Kestrel;

/// <summary>
/// Engine thread: collects a connection's first bytes until they hold a whole PROXY protocol header, then says how it
/// ended. The bytes wait in one array from the shared pool, returned once the header is done; the bytes received after
/// the header are the application's and go on to the input pipe.
/// </summary>
internal sealed class ProxyHeaderReader
{
    private readonly VsoProxyProtocol _mode;
    private byte[]? _buffer;
    private int _filled;

    public ProxyHeaderReader(VsoProxyProtocol mode) => _mode = mode;

    public ProxyHeader Header { get; private set; }

    public ProxyRejection Rejection { get; private set; }

    /// <summary>The header's TLV bytes (v2), valid until <see cref="Release"/>.</summary>
    public ReadOnlySpan<byte> Tlvs => _buffer.AsSpan(Header.TlvOffset, Header.TlvLength);

    /// <summary>Bytes received after the header, valid until <see cref="Release"/>.</summary>
    public ReadOnlySpan<byte> Leftover => _buffer.AsSpan(Header.Length, _filled - Header.Length);

    /// <summary>Reads what the connection holds, up to the longest header, and parses what has arrived.</summary>
    public ProxyHeaderStatus Read(VsoConnectionEndpoint endpoint)
    {
        _buffer ??= ArrayPool<byte>.Shared.Rent(ProxyProtocolParser.MaxHeaderLength);
        while (_filled < ProxyProtocolParser.MaxHeaderLength && endpoint.ReadableBytes > 0)
        {
            var n = endpoint.Read(_buffer.AsSpan(_filled, ProxyProtocolParser.MaxHeaderLength - _filled));
            if (n == 0)
            {
                break;
            }

            _filled += n;
        }

        var status = ProxyProtocolParser.TryParse(_buffer.AsSpan(0, _filled), _mode, out var header, out var rejection);
        Header = header;
        Rejection = rejection;
        return status;
    }

    /// <summary>The header will not come: the connection ended or its time ran out.</summary>
    public void Reject(ProxyRejection reason) => Rejection = reason;

    public void Release()
    {
        if (_buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = null;
        }

        _filled = 0;
    }
}
