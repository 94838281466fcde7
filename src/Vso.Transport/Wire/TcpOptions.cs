using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Vso.Transport.Wire;

/// <summary>One SACK block: the sequence space [Left, Right) received out of order (RFC 2018 §3).</summary>
internal readonly record struct SackBlock(uint Left, uint Right);

/// <summary>
/// All TCP options of one segment, parsed or to emit. Fixed size and allocation-free: the SACK blocks live in an inline array.
/// Start from <see cref="None"/>, not <c>default</c>: a default instance has <see cref="WindowScale"/> 0, which means "shift 0", not "absent".
/// </summary>
internal struct TcpOptions
{
    /// <summary>At most 4 blocks fit in 40 option bytes (RFC 2018 §3); 3 when timestamps are present.</summary>
    public const int MaxSackBlocks = 4;

    /// <summary>Option space in a TCP header: data offset 15 words minus the 20-byte fixed part (RFC 9293 §3.1).</summary>
    public const int MaxLength = 40;

    internal const byte KindEnd = 0;
    internal const byte KindNop = 1;
    internal const byte KindMss = 2;
    internal const byte KindWindowScale = 3;
    internal const byte KindSackPermitted = 4;
    internal const byte KindSack = 5;
    internal const byte KindTimestamp = 8;

    /// <summary>Largest shift a receiver honours (RFC 7323 §2.3).</summary>
    internal const int MaxWindowScale = 14;

    /// <summary>Maximum segment size (RFC 9293 §3.7.1); 0 = absent.</summary>
    public ushort Mss;

    /// <summary>Window scale shift (RFC 7323 §2); -1 = absent.</summary>
    public sbyte WindowScale;

    /// <summary>SACK-permitted (RFC 2018 §2).</summary>
    public bool SackPermitted;

    /// <summary>Timestamps option present (RFC 7323 §3).</summary>
    public bool HasTimestamp;
    public uint TsVal;
    public uint TsEcr;

    /// <summary>Number of valid entries, 0..<see cref="MaxSackBlocks"/>.</summary>
    public int SackBlockCount;

    private SackBlockArray _sackBlocks;

    public static TcpOptions None => new() { WindowScale = -1 };

    public readonly SackBlock GetSackBlock(int i)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)i, (uint)Math.Min(SackBlockCount, MaxSackBlocks), nameof(i));
        return _sackBlocks[i];
    }

    /// <summary>Sets block <paramref name="i"/>, growing <see cref="SackBlockCount"/> to i + 1 if it was smaller.</summary>
    public void SetSackBlock(int i, SackBlock b)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)i, (uint)MaxSackBlocks, nameof(i));
        _sackBlocks[i] = b;
        if (SackBlockCount <= i)
        {
            SackBlockCount = i + 1;
        }
    }

    /// <summary>
    /// Bytes <see cref="TcpRepr.Emit"/> emits: a multiple of 4, at most 40. SACK blocks that do not fit
    /// after the other options are left out (the first blocks are kept: RFC 2018 §4 puts the most recent first).
    /// </summary>
    public readonly int EncodedLength => FixedLength + (EncodedSackBlocks > 0 ? 4 + (8 * EncodedSackBlocks) : 0);

    // Layout, every group already 32-bit aligned so no trailing padding is needed:
    //   MSS                                 2,4,mss(2)                          4 bytes
    //   SACK-permitted + timestamps         4,2,8,10,val,ecr  (or 1,1,8,10,...) 12 bytes  (Linux's SYN layout)
    //   SACK-permitted alone                1,1,4,2                             4 bytes
    //   window scale                        1,3,3,shift                         4 bytes
    //   SACK                                1,1,5,len,blocks                    4 + 8n bytes
    private readonly int FixedLength =>
        (Mss != 0 ? 4 : 0)
        + (HasTimestamp ? 12 : SackPermitted ? 4 : 0)
        + (WindowScale >= 0 ? 4 : 0);

    private readonly int EncodedSackBlocks
    {
        get
        {
            int count = Math.Clamp(SackBlockCount, 0, MaxSackBlocks);
            int room = (MaxLength - FixedLength - 4) / 8;
            return Math.Max(0, Math.Min(count, room));
        }
    }

    /// <summary>Writes the options as laid out above; returns <see cref="EncodedLength"/>.</summary>
    internal readonly int Write(Span<byte> destination)
    {
        int length = EncodedLength;
        var d = destination[..length];
        int o = 0;
        if (Mss != 0)
        {
            d[o] = KindMss;
            d[o + 1] = 4;
            BinaryPrimitives.WriteUInt16BigEndian(d[(o + 2)..], Mss);
            o += 4;
        }

        if (HasTimestamp)
        {
            if (SackPermitted)
            {
                d[o] = KindSackPermitted;
                d[o + 1] = 2;
            }
            else
            {
                d[o] = KindNop;
                d[o + 1] = KindNop;
            }

            d[o + 2] = KindTimestamp;
            d[o + 3] = 10;
            BinaryPrimitives.WriteUInt32BigEndian(d[(o + 4)..], TsVal);
            BinaryPrimitives.WriteUInt32BigEndian(d[(o + 8)..], TsEcr);
            o += 12;
        }
        else if (SackPermitted)
        {
            d[o] = KindNop;
            d[o + 1] = KindNop;
            d[o + 2] = KindSackPermitted;
            d[o + 3] = 2;
            o += 4;
        }

        if (WindowScale >= 0)
        {
            d[o] = KindNop;
            d[o + 1] = KindWindowScale;
            d[o + 2] = 3;
            d[o + 3] = (byte)WindowScale;
            o += 4;
        }

        int blocks = EncodedSackBlocks;
        if (blocks > 0)
        {
            d[o] = KindNop;
            d[o + 1] = KindNop;
            d[o + 2] = KindSack;
            d[o + 3] = (byte)(2 + (8 * blocks));
            o += 4;
            for (int i = 0; i < blocks; i++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(d[o..], _sackBlocks[i].Left);
                BinaryPrimitives.WriteUInt32BigEndian(d[(o + 4)..], _sackBlocks[i].Right);
                o += 8;
            }
        }

        System.Diagnostics.Debug.Assert(o == length, "EncodedLength disagrees with Write");
        return length;
    }

    /// <summary>
    /// Parses an option list (RFC 9293 §3.2): EOL ends it, NOP is skipped, every other kind carries a length byte
    /// covering kind and length. A length below 2, or one that runs past the header, makes the list unparseable
    /// (<see cref="WireStatus.BadOption"/>); RFC 9293 §3.2 asks to handle such "illegal option length" without
    /// crashing, and no later option could be located reliably. Known options with the wrong length are also
    /// <see cref="WireStatus.BadOption"/>. Unknown kinds are skipped by their length (RFC 9293 §3.1 "must be prepared to
    /// handle an illegal option length"; RFC 1122 §4.2.2.5 "MUST ignore any option it does not implement").
    /// </summary>
    internal static WireStatus TryParse(ReadOnlySpan<byte> options, out TcpOptions result)
    {
        result = None;
        int i = 0;
        while (i < options.Length)
        {
            byte kind = options[i];
            if (kind == KindEnd)
            {
                break;
            }

            if (kind == KindNop)
            {
                i++;
                continue;
            }

            if (i + 1 >= options.Length)
            {
                return WireStatus.BadOption;
            }

            int length = options[i + 1];
            if (length < 2 || length > options.Length - i)
            {
                return WireStatus.BadOption;
            }

            var value = options.Slice(i + 2, length - 2);
            switch (kind)
            {
                case KindMss:
                    if (length != 4)
                    {
                        return WireStatus.BadOption;
                    }

                    result.Mss = BinaryPrimitives.ReadUInt16BigEndian(value);
                    break;

                case KindWindowScale:
                    if (length != 3)
                    {
                        return WireStatus.BadOption;
                    }

                    // RFC 7323 §2.3: a shift above 14 is logged and used as 14.
                    result.WindowScale = (sbyte)Math.Min((int)value[0], MaxWindowScale);
                    break;

                case KindSackPermitted:
                    if (length != 2)
                    {
                        return WireStatus.BadOption;
                    }

                    result.SackPermitted = true;
                    break;

                case KindTimestamp:
                    if (length != 10)
                    {
                        return WireStatus.BadOption;
                    }

                    result.HasTimestamp = true;
                    result.TsVal = BinaryPrimitives.ReadUInt32BigEndian(value);
                    result.TsEcr = BinaryPrimitives.ReadUInt32BigEndian(value[4..]);
                    break;

                case KindSack:
                    // RFC 2018 §3: length 2 + 8n; 40 option bytes bound n by 4.
                    if (length < 10 || (length - 2) % 8 != 0)
                    {
                        return WireStatus.BadOption;
                    }

                    int blocks = (length - 2) / 8;
                    result.SackBlockCount = blocks;
                    for (int b = 0; b < blocks; b++)
                    {
                        result._sackBlocks[b] = new SackBlock(
                            BinaryPrimitives.ReadUInt32BigEndian(value[(8 * b)..]),
                            BinaryPrimitives.ReadUInt32BigEndian(value[((8 * b) + 4)..]));
                    }

                    break;

                default:
                    break;
            }

            i += length;
        }

        return WireStatus.Ok;
    }

    [InlineArray(MaxSackBlocks)]
    private struct SackBlockArray
    {
        private SackBlock _element;
    }
}
