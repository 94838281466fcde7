using System.Security.Cryptography;
using Vso.Transport.Interface;
using Vso.Transport.Wire;

namespace Vso.Transport.Tcp;

/// <summary>
/// The stateless half of a passive open (RFC 4987 §3.6, in Linux's manner): a SYN is answered with a SYN-ACK whose
/// ISN is a <see cref="SynCookies"/> cookie and nothing is kept; the ACK that returns it is checked (hash, age of at
/// most two minutes) and yields what the connection needs to start in SYN-RECEIVED as if it had been there all along:
/// the peer's ISN, ours, the MSS from the cookie's table, and, when timestamps were used, the peer's window scale and
/// SACK-permitted from the TSecr it echoes. Without peer timestamps the SYN-ACK offers neither (they could not return).
/// Engine thread only; allocation-free.
/// </summary>
internal sealed class SynCookieHandshake
{
    /// <summary>How long a cookie stays valid (the current and the previous counter period): about two minutes.</summary>
    public const long LifetimeMicroseconds = SynCookies.MaxAgeInPeriods * SynCookies.CounterPeriodMicroseconds;

    /// <summary>
    /// How long one secret makes cookies. Replacing it bounds how long an attacker can work against one key; a cookie made
    /// just before a rotation stays valid for its lifetime under the previous secret.
    /// </summary>
    public const long SecretLifetimeMicroseconds = 10 * 60 * 1_000_000L;

    private readonly TcpLayer _layer;
    private readonly SynCookies _cookies = new(ReadOnlySpan<byte>.Empty);
    private readonly int _receiveWindowShift;
    private long _rotateAtMicroseconds = -1;

    public SynCookieHandshake(TcpLayer layer)
    {
        _layer = layer;

        // The shift a connection's own SYN-ACK offers: the connection rebuilt from the cookie advertises with it.
        _receiveWindowShift = TcpReceiver.OfferedWindowShift(layer.Settings);
    }

    /// <summary>Secrets replaced since the stack started.</summary>
    public int SecretRotations { get; private set; }

    /// <summary>Answers <paramref name="syn"/> with a cookie SYN-ACK; returns whether it left.</summary>
    public bool SendCookie(in ConnectionId id, in TcpSegment syn)
    {
        var settings = _layer.Settings;
        var now = _layer.Clock.NowMicroseconds;
        var peer = syn.Options;
        RotateSecretIfDue(now);

        // RFC 9293 §3.7.1: without the option the peer takes 536.
        var iss = _cookies.CreateIsn(id, syn.SequenceNumber, now, peer.Mss != 0 ? peer.Mss : 536, out _);

        var options = TcpOptions.None;
        options.Mss = (ushort)_layer.MaxSegmentSize;
        if (settings.Timestamps && peer.HasTimestamp)
        {
            // Window scale and SACK-permitted survive only in the TSval the peer echoes; RFC 7323 §2.3: a shift above 14 is used as 14.
            var peerShift = settings.WindowScaling && peer.WindowScale >= 0 ? Math.Min((int)peer.WindowScale, 14) : -1;
            var sack = settings.Sack && peer.SackPermitted;
            if (peerShift >= 0)
            {
                options.WindowScale = (sbyte)_receiveWindowShift;
            }

            options.SackPermitted = sack;
            options.HasTimestamp = true;
            options.TsVal = SynCookies.EncodeTimestamp(TimestampNow(id, now), peerShift, sack, ecn: false);
            options.TsEcr = peer.TsVal;
        }

        var header = new TcpRepr
        {
            SourcePort = id.LocalPort,
            DestinationPort = id.RemotePort,
            SequenceNumber = iss,
            AcknowledgmentNumber = syn.SequenceNumber + 1,
            Flags = TcpFlags.Syn | TcpFlags.Ack,

            // RFC 7323 §2.2: the window of a SYN is never scaled.
            Window = (ushort)Math.Min(settings.ReceiveBufferSize, ushort.MaxValue),
            Options = options,
        };

        var ip = _layer.Ip;
        if (!ip.TryBegin(id.RemoteAddress, IpProtocol.Tcp))
        {
            // The path waits for ARP: nothing is kept, the peer's SYN retransmission asks again.
            return false;
        }

        var tcp = ip.Append(header.HeaderLength);
        var headerLength = header.Emit(tcp);
        TcpChecksum.Finish(tcp, headerLength, id.LocalAddress, id.RemoteAddress, 0, default);
        ip.Commit();
        return true;
    }

    /// <summary>
    /// Checks the cookie an ACK to a listener returns: SEG.ACK - 1 must be a cookie we made for this 4-tuple and
    /// SEG.SEQ - 1 within the last two minutes, and an echoed TSecr must not lie ahead of our clock.
    /// </summary>
    public bool TryValidate(in ConnectionId id, in TcpSegment ack, out CookieHandshake handshake)
    {
        handshake = default;
        var now = _layer.Clock.NowMicroseconds;
        var peerIsn = ack.SequenceNumber - 1;
        var iss = ack.AcknowledgmentNumber - 1;
        if (!_cookies.TryValidate(id, peerIsn, iss, now, out var mss))
        {
            return false;
        }

        var windowScale = -1;
        var sack = false;
        var timestamps = _layer.Settings.Timestamps && ack.Options.HasTimestamp;

        // Linux's cookie_timestamp_decode: an ACK without timestamps means none were negotiated, nor anything they carry.
        if (timestamps && !SynCookies.TryDecodeTimestamp(ack.Options.TsEcr, TimestampNow(id, now), out windowScale, out sack, out _))
        {
            return false;
        }

        handshake = new CookieHandshake(peerIsn, iss, mss, windowScale, sack, timestamps, ack.Options.TsVal);
        return true;
    }

    private void RotateSecretIfDue(long now)
    {
        if (_rotateAtMicroseconds < 0)
        {
            _rotateAtMicroseconds = now + SecretLifetimeMicroseconds;
            return;
        }

        if (now < _rotateAtMicroseconds)
        {
            return;
        }

        Span<byte> secret = stackalloc byte[SynCookies.SecretSize];
        RandomNumberGenerator.Fill(secret);
        _cookies.RotateSecret(secret, now);
        CryptographicOperations.ZeroMemory(secret);
        _rotateAtMicroseconds = now + SecretLifetimeMicroseconds;
        SecretRotations++;
    }

    /// <summary>The connection's own timestamp clock (<see cref="TcpConnection.TimestampNow"/>): TSvals stay monotonic after the cookie.</summary>
    private uint TimestampNow(in ConnectionId id, long now) =>
        (uint)(now / 1000) + _layer.Isn.TimestampOffset(id.LocalAddress, id.LocalPort, id.RemoteAddress, id.RemotePort);
}

/// <summary>What a valid cookie ACK carries: the handshake's outcome as the SYN and our SYN-ACK had settled it.</summary>
/// <param name="PeerWindowScale">The peer's shift count, -1 when window scaling is off.</param>
/// <param name="TsVal">The ACK's TSval (TS.Recent) when <paramref name="Timestamps"/>.</param>
internal readonly record struct CookieHandshake(uint PeerIsn, uint Iss, int Mss, int PeerWindowScale, bool SackPermitted, bool Timestamps, uint TsVal);
