using System.Buffers.Binary;
using System.Security.Cryptography;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// Local ports for active opens by RFC 6056 §3.3.4, Algorithm 4 ("double-hash port selection"):
/// <code>
/// port = first + (F(local IP, remote IP, remote port, key) + table[G(local IP, remote IP, remote port, key)]) mod count
/// </code>
/// where table[] is a small array of counters, each advanced once per candidate tried. F spreads the
/// endpoints of different peers over the whole range, so an off-path attacker cannot guess the port we
/// use towards someone else (RFC 6056 §3.1); the counter, shared only by the peers that hash to the same
/// slot, walks the range sequentially for one peer, so a reconnect to the same peer gets a fresh port and
/// does not collide with its own TIME-WAIT (the reason §3.3.4 prefers it to Algorithm 3). F and G are
/// SipHash-2-4 under one key with a domain byte each. Engine-thread only; allocation-free after construction.
/// </summary>
internal sealed class EphemeralPortAllocator
{
    /// <summary>The IANA dynamic range (RFC 6335 §6); RFC 6056 §3.2 would allow 1024-65535, configurable here.</summary>
    public const ushort DefaultFirstPort = 49152;

    public const ushort DefaultLastPort = 65535;

    /// <summary>Counters in the table (RFC 6056 §3.3.4 TABLE_LENGTH); a power of two is not required.</summary>
    public const int DefaultTableLength = 1024;

    private const byte OffsetDomain = 0;
    private const byte IndexDomain = 1;
    private const byte TableDomain = 2;

    private readonly SipHashKey _key;
    private readonly uint[] _counters;
    private readonly ushort _firstPort;
    private readonly uint _portCount;

    /// <param name="key"><see cref="SipHashKey.Size"/> bytes, or empty for a random key.</param>
    public EphemeralPortAllocator(ReadOnlySpan<byte> key, ushort firstPort = DefaultFirstPort, ushort lastPort = DefaultLastPort, int tableLength = DefaultTableLength)
    {
        if (firstPort == 0 || lastPort < firstPort)
        {
            throw new ArgumentOutOfRangeException(nameof(firstPort), $"The port range {firstPort}-{lastPort} is empty or includes port 0.");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tableLength);
        if (key.IsEmpty)
        {
            Span<byte> random = stackalloc byte[SipHashKey.Size];
            RandomNumberGenerator.Fill(random);
            _key = SipHashKey.Read(random);
        }
        else
        {
            _key = key.Length == SipHashKey.Size
                ? SipHashKey.Read(key)
                : throw new ArgumentException($"A port selection key is {SipHashKey.Size} bytes.", nameof(key));
        }

        _firstPort = firstPort;
        _portCount = (uint)(lastPort - firstPort + 1);

        // RFC 6056 §3.3.4 starts each counter at a random value; from the key, so that a given key
        // reproduces the same sequence.
        _counters = new uint[tableLength];
        Span<byte> slot = stackalloc byte[5];
        for (var i = 0; i < _counters.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(slot, i);
            slot[4] = TableDomain;
            _counters[i] = (uint)SipHash.Hash(_key, slot);
        }
    }

    public ushort FirstPort => _firstPort;

    public ushort LastPort => (ushort)(_firstPort + _portCount - 1);

    /// <summary>
    /// A local port for a connection from <paramref name="localAddress"/> to
    /// <paramref name="remoteAddress"/>:<paramref name="remotePort"/> that <paramref name="probe"/> says
    /// is free. False when every port of the range is in use towards that peer (RFC 6056 §3.3.4 returns
    /// ERROR after trying each port once).
    /// </summary>
    public bool TryAllocate<TProbe>(Ipv4Address localAddress, Ipv4Address remoteAddress, ushort remotePort, TProbe probe, out ushort localPort)
        where TProbe : IPortInUseProbe
    {
        var offset = Hash(localAddress, remoteAddress, remotePort, OffsetDomain);
        var index = (int)(Hash(localAddress, remoteAddress, remotePort, IndexDomain) % (uint)_counters.Length);
        ref var counter = ref _counters[index];
        for (var remaining = _portCount; remaining > 0; remaining--)
        {
            var candidate = (ushort)(_firstPort + ((ulong)offset + counter) % _portCount);
            counter++;
            if (!probe.IsInUse(new ConnectionId(localAddress, candidate, remoteAddress, remotePort)))
            {
                localPort = candidate;
                return true;
            }
        }

        localPort = 0;
        return false;
    }

    private uint Hash(Ipv4Address localAddress, Ipv4Address remoteAddress, ushort remotePort, byte domain)
    {
        Span<byte> input = stackalloc byte[11];
        BinaryPrimitives.WriteUInt32LittleEndian(input, localAddress.Value);
        BinaryPrimitives.WriteUInt32LittleEndian(input[4..], remoteAddress.Value);
        BinaryPrimitives.WriteUInt16LittleEndian(input[8..], remotePort);
        input[10] = domain;
        return (uint)SipHash.Hash(_key, input);
    }
}
