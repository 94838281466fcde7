using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using Vso.MemoryPinning;
using Vso.Transport.Engine;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Interface;

/// <summary>
/// The IPv4 host on one link: Ethernet demultiplexing, ARP (RFC 826), IPv4 input (RFC 791), ICMP echo
/// (RFC 792), hand-off of datagrams to the registered transports (<see cref="ITransportProtocol"/>), and the framing
/// of everything the stack sends (<see cref="IIpOutput"/>, over the link's <see cref="TransmitBatch"/>). Malformed input
/// is dropped and counted per reason; nothing here throws on network input.
/// </summary>
internal sealed class NetworkInterface : IFrameReceiver, IIpOutput
{
    private readonly ILink _link;
    private readonly IClock _clock;
    private readonly ILogger _log;
    private readonly ArpCache _arp;
    private readonly MartianFilter _martianFilter;
    private readonly ITransportProtocol?[] _transportByProtocol = new ITransportProtocol?[256];
    private readonly List<ITransportProtocol> _transports = [];
    private ushort _nextIdentification;

    /// <summary>ICMP echo replies, per stack (RFC 1812 §4.3.2.8 allows rate limiting ICMP). Mutable struct: never copied.</summary>
    private TokenBucket _echoReplyLimit;

    // Log lines caused by network input: one per second at most, with a count of the rest.
    private readonly LogRateLimiter _failureLog = new(TimeSpan.FromSeconds(1));
    private readonly LogRateLimiter _neighborLog = new(TimeSpan.FromSeconds(1));

    // The datagram being built (between TryBegin and Commit or Cancel).
    private MacAddress _buildingNextHopHardware;
    private Ipv4Address _buildingDestination;
    private IpProtocol _buildingProtocol;
    private int _buildingLinearLength;
    private int _buildingGatheredLength;

    public NetworkInterface(ILink link, Ipv4Address address, int prefixLength, Ipv4Address gateway, IClock clock, WireCounters counters, ILogger log, MartianCounters? martians = null)
    {
        _link = link;
        _clock = clock;
        _log = log;
        Address = address;
        PrefixLength = prefixLength;
        Gateway = gateway;
        Counters = counters;
        Martians = martians ?? new MartianCounters();
        Mtu = link.Mtu;
        Batch = new TransmitBatch(64, EthernetFrame.HeaderLength + Mtu);
        _arp = new ArpCache(TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(1), 5);
        _echoReplyLimit = TokenBucket.PerSecond(EchoRepliesPerSecond, EchoReplyBurst, clock.NowMicroseconds);
        _martianFilter = new MartianFilter(address, prefixLength);
    }

    /// <summary>Linux's icmp_msgs_per_sec default.</summary>
    public const int EchoRepliesPerSecond = 1000;

    /// <summary>Linux's icmp_msgs_burst default.</summary>
    public const int EchoReplyBurst = 50;

    /// <summary>Datagrams and ARP packets refused by the martian filter, per reason.</summary>
    public MartianCounters Martians { get; }

    public Ipv4Address Address { get; }

    public int PrefixLength { get; }

    public Ipv4Address Gateway { get; }

    public int Mtu { get; }

    public MacAddress HardwareAddress => _link.HardwareAddress;

    public WireCounters Counters { get; }

    public TransmitBatch Batch { get; }

    /// <inheritdoc/>
    public int MaxGatherPieces => TransmitBatch.MaxGather;

    /// <summary>Frames that were well-formed but not for us (other MAC, other IP, other protocols).</summary>
    public long NotForUs { get; private set; }

    public long EchoRepliesSent { get; private set; }

    /// <summary>Echo requests left unanswered by the reply limit (1000/s, burst 50).</summary>
    public long EchoRepliesSuppressed { get; private set; }

    public long FramesReceived { get; private set; }

    /// <summary>Entries in the ARP cache, resolved or being resolved.</summary>
    public int ArpEntries => _arp.Count;

    /// <summary>Exceptions that escaped the processing of one frame and were contained (a healthy stack keeps 0).</summary>
    public long ContainedExceptions { get; private set; }

    /// <summary>
    /// One received frame. Network input never throws out of the engine: anything that escapes the
    /// processing of this frame is contained here, counted and logged, and the next frame goes on.
    /// </summary>
    public void OnFrame(ReadOnlySpan<byte> frame)
    {
        try
        {
            ProcessFrame(frame);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            ContainedExceptions++;
            if (_failureLog.TryAcquire(_clock.NowMicroseconds, out var suppressed))
            {
                _log.FrameProcessingFailed(suppressed, ex);
            }
            if (Batch.Count < Batch.Capacity)
            {
                Batch.Cancel();
            }
        }
    }

    /// <summary>
    /// A frame another shard of the stack received and handed over (<see cref="Engine.ShardRouter"/>). Processed as
    /// <see cref="OnFrame"/>, except that an ARP request is only learned from: the shard that received it answers.
    /// </summary>
    public void OnHandedOverFrame(ReadOnlySpan<byte> frame)
    {
        _handedOver = true;
        try
        {
            OnFrame(frame);
        }
        finally
        {
            _handedOver = false;
        }
    }

    private bool _handedOver;

    private void ProcessFrame(ReadOnlySpan<byte> frame)
    {
        FramesReceived++;
        var status = EthernetFrame.TryParse(frame, out var ethernet);
        if (status != WireStatus.Ok)
        {
            Counters.Drop(WireLayer.Ethernet, status);
            return;
        }

        if (ethernet.Destination != HardwareAddress && !ethernet.Destination.IsBroadcast)
        {
            NotForUs++;
            return;
        }

        switch (ethernet.EtherType)
        {
            case EtherType.Ipv4:
                OnIpv4(ethernet.Payload);
                break;
            case EtherType.Arp:
                OnArp(ethernet.Payload);
                break;
            default:
                Counters.Drop(WireLayer.Ethernet, WireStatus.UnsupportedEtherType);
                break;
        }
    }

    private void OnIpv4(ReadOnlySpan<byte> packet)
    {
        var status = Ipv4Packet.TryParse(packet, out var ip);
        if (status != WireStatus.Ok)
        {
            Counters.Drop(WireLayer.Ipv4, status);
            return;
        }

        if (ip.Destination != Address)
        {
            NotForUs++;
            return;
        }

        // Before any protocol sees it (so before any state or ARP request exists for its source).
        var martian = ClassifyInput(ip);
        if (martian != MartianReason.None)
        {
            Martians.Drop(martian);
            return;
        }

        if (ip.Protocol == IpProtocol.Icmp)
        {
            OnIcmp(ip.Source, ip.Payload);
        }
        else if (_transportByProtocol[(byte)ip.Protocol] is { } transport)
        {
            transport.OnDatagram(ip);
        }
        else
        {
            Counters.Drop(WireLayer.Ipv4, WireStatus.UnsupportedProtocol);
        }
    }

    /// <summary>
    /// Why a datagram addressed to us must be dropped unseen, or None: a source that cannot be genuine (RFC 1122
    /// §3.2.1.3, RFC 1812 §5.3.7), a land TCP segment, or a source we have no route back to (no gateway and off
    /// our subnet: answering would mean an ARP request and a cache slot for an address that is not on the link).
    /// </summary>
    private MartianReason ClassifyInput(in Ipv4Packet ip)
    {
        var payload = ip.Payload;
        var reason = ip.Protocol == IpProtocol.Tcp && payload.Length >= 4
            ? _martianFilter.ClassifyTcp(ip.Source, BinaryPrimitives.ReadUInt16BigEndian(payload), ip.Destination, BinaryPrimitives.ReadUInt16BigEndian(payload[2..]))
            : _martianFilter.Classify(ip.Source, ip.Destination);
        return reason == MartianReason.None && !CanReach(ip.Source) ? MartianReason.NoRoute : reason;
    }

    /// <inheritdoc/>
    public bool CanReach(Ipv4Address destination) => Gateway != Ipv4Address.Any || _martianFilter.IsOnLink(destination);

    /// <summary>Hands the datagrams of <see cref="ITransportProtocol.Protocol"/> to <paramref name="transport"/>; one per protocol.</summary>
    public void Register(ITransportProtocol transport)
    {
        var protocol = (byte)transport.Protocol;
        if (transport.Protocol == IpProtocol.Icmp || _transportByProtocol[protocol] is not null)
        {
            throw new InvalidOperationException($"IP protocol {transport.Protocol} already has a handler on {Address}.");
        }

        _transportByProtocol[protocol] = transport;
        _transports.Add(transport);
    }

    /// <summary>RFC 792: an echo request is answered with the same identifier, sequence number and data.</summary>
    private void OnIcmp(Ipv4Address source, ReadOnlySpan<byte> message)
    {
        if (message.Length > 0 && message[0] == IcmpErrorMessage.DestinationUnreachable)
        {
            OnIcmpError(message);
            return;
        }

        var status = IcmpEchoMessage.TryParse(message, out var echo);
        if (status != WireStatus.Ok)
        {
            Counters.Drop(WireLayer.Icmp, status);
            return;
        }

        if (echo.Type != 8 || echo.Code != 0)
        {
            return;
        }

        if (8 + echo.Data.Length > Mtu - 20)
        {
            return;
        }

        // Linux's icmp_msgs_per_sec and icmp_msgs_burst (1000/s, 50): a ping flood, or spoofed pings aimed at a
        // victim, gets a bounded stream of replies.
        if (!_echoReplyLimit.TryTake(_clock.NowMicroseconds))
        {
            EchoRepliesSuppressed++;
            return;
        }

        if (!TryBegin(source, IpProtocol.Icmp))
        {
            return;
        }

        IcmpEchoMessage.WriteEcho(Append(IcmpEchoMessage.HeaderLength + echo.Data.Length), 0, echo.Identifier, echo.SequenceNumber, echo.Data);
        Commit();
        EchoRepliesSent++;
    }

    /// <summary>
    /// RFC 1122 §3.2.2.1: a Destination Unreachable goes to the transport the quoted datagram belongs to, when
    /// that datagram was one of ours (its quoted source is our address). Malformed messages are dropped and counted.
    /// </summary>
    private void OnIcmpError(ReadOnlySpan<byte> message)
    {
        var status = IcmpErrorMessage.TryParse(message, out var error);
        if (status != WireStatus.Ok)
        {
            Counters.Drop(WireLayer.Icmp, status);
            return;
        }

        if (error.QuotedSource != Address)
        {
            Counters.Drop(WireLayer.Icmp, WireStatus.BadAddress);
            return;
        }

        if (error.QuotedProtocol == IpProtocol.Icmp || _transportByProtocol[(byte)error.QuotedProtocol] is not { } transport)
        {
            Counters.Drop(WireLayer.Icmp, WireStatus.UnsupportedProtocol);
            return;
        }

        transport.OnIcmpError(error);
    }

    /// <summary>RFC 826 packet reception: merge the sender's mapping, answer requests for our address.</summary>
    private void OnArp(ReadOnlySpan<byte> packet)
    {
        var status = ArpPacket.TryParse(packet, out var arp);
        if (status != WireStatus.Ok)
        {
            Counters.Drop(WireLayer.Arp, status);
            return;
        }

        // A sender that cannot be a neighbour (a martian, or off our subnet) gets no cache slot and no reply:
        // we would never send to it through ARP (RFC 1122 §3.2.1.3; RFC 5227 probes from 0.0.0.0 included).
        var martian = _martianFilter.ClassifySource(arp.SenderProtocol);
        if (martian == MartianReason.None && !_martianFilter.IsOnLink(arp.SenderProtocol))
        {
            martian = MartianReason.NoRoute;
        }

        if (martian != MartianReason.None)
        {
            Martians.Drop(martian);
            return;
        }

        var now = _clock.NowMicroseconds;
        var forUs = arp.TargetProtocol == Address;
        var changed = forUs
            ? _arp.Learn(arp.SenderProtocol, arp.SenderHardware, now)
            : _arp.Refresh(arp.SenderProtocol, arp.SenderHardware, now);
        if (changed)
        {
            if (_log.IsEnabled(LogLevel.Debug) && _neighborLog.TryAcquire(now, out var suppressed))
            {
                _log.NeighborResolved(arp.SenderProtocol, arp.SenderHardware, suppressed);
            }
            foreach (var transport in _transports)
            {
                transport.OnNeighborResolved(arp.SenderProtocol);
            }
        }

        if (forUs && arp.Operation == ArpOperation.Request && !_handedOver)
        {
            SendArp(ArpOperation.Reply, arp.SenderHardware, arp.SenderProtocol, arp.SenderHardware);
        }
    }

    /// <summary>Announces our address (gratuitous ARP request, RFC 5227 §3) so neighbours update their caches.</summary>
    public void AnnounceAddress() => SendArp(ArpOperation.Request, MacAddress.Zero, Address, MacAddress.Broadcast);

    private void SendArp(ArpOperation operation, MacAddress targetHardware, Ipv4Address targetProtocol, MacAddress frameDestination)
    {
        EnsureRoom();
        var frame = Batch.Begin();
        EthernetFrame.WriteHeader(frame, frameDestination, HardwareAddress, EtherType.Arp);
        var length = ArpPacket.Write(frame[EthernetFrame.HeaderLength..], operation, HardwareAddress, Address, targetHardware, targetProtocol);

        // Ethernet minimum payload is 46 bytes: pad so real NICs do not have to.
        var total = Math.Max(EthernetFrame.HeaderLength + length, 60);
        frame[(EthernetFrame.HeaderLength + length)..total].Clear();
        Batch.Commit(total);
    }

    /// <summary>The neighbour a packet to <paramref name="destination"/> goes to: itself on the subnet, else the gateway.</summary>
    public Ipv4Address NextHop(Ipv4Address destination) =>
        destination.InSubnet(Address, PrefixLength) || Gateway == Ipv4Address.Any ? destination : Gateway;

    /// <inheritdoc/>
    public bool TryBegin(Ipv4Address destination, IpProtocol protocol)
    {
        // No route (no gateway, off our subnet): no ARP request, no cache slot; the datagram is not sent.
        if (!CanReach(destination))
        {
            return false;
        }

        var nextHop = NextHop(destination);
        var now = _clock.NowMicroseconds;
        if (_arp.TryGet(nextHop, now, out var mac, out var refreshDue))
        {
            if (refreshDue)
            {
                // Renew the mapping before it expires: ask the neighbour directly, as a unicast request.
                SendArp(ArpOperation.Request, MacAddress.Zero, nextHop, mac);
            }
        }
        else
        {
            if (_arp.ShouldRequest(nextHop, now))
            {
                SendArp(ArpOperation.Request, MacAddress.Zero, nextHop, MacAddress.Broadcast);
            }

            return false;
        }

        EnsureRoom();
        Batch.Begin();
        _buildingNextHopHardware = mac;
        _buildingDestination = destination;
        _buildingProtocol = protocol;
        _buildingLinearLength = 0;
        _buildingGatheredLength = 0;
        return true;
    }

    /// <inheritdoc/>
    public Span<byte> Append(int length)
    {
        const int headers = EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength;
        var frame = Batch.Building;
        if ((uint)length > (uint)(frame.Length - headers - _buildingLinearLength))
        {
            throw new InvalidOperationException(
                $"Datagram to {_buildingDestination} exceeds the frame: {_buildingLinearLength} + {length} linear bytes after the headers, room for {frame.Length - headers}.");
        }

        var bytes = frame.Slice(headers + _buildingLinearLength, length);
        _buildingLinearLength += length;
        return bytes;
    }

    /// <inheritdoc/>
    public void AppendGathered(PinLease lease)
    {
        if (Batch.FreeGatherSlots == 0 || !Batch.CanHoldLease)
        {
            lease.Dispose(); // it will never be read
            throw new InvalidOperationException($"Gather list overflow: the datagram to {_buildingDestination} was not clamped to {MaxGatherPieces} pieces.");
        }

        Batch.HoldLease(lease);
        Batch.TryAddGather(lease.Address, lease.Length);
        _buildingGatheredLength += lease.Length;
    }

    /// <inheritdoc/>
    /// <remarks>
    /// A super-segment's IPv4 header is the first segment's: the kernel gives each segment its own identification
    /// (this one, then +1 each), length and checksum.
    /// </remarks>
    public void Commit(int gsoSize = 0)
    {
        var frame = Batch.Building;
        EthernetFrame.WriteHeader(frame, _buildingNextHopHardware, HardwareAddress, EtherType.Ipv4);
        Ipv4Packet.WriteHeader(
            frame[EthernetFrame.HeaderLength..], Address, _buildingDestination, _buildingProtocol, _buildingLinearLength + _buildingGatheredLength, _nextIdentification++);
        Batch.Commit(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + _buildingLinearLength, gsoSize);
    }

    /// <summary>The link's segmentation offload limit (TCP payload bytes per super-segment), 0 without.</summary>
    public int MaxOffloadPayload => _link.MaxOffloadPayload;

    /// <inheritdoc/>
    public void Cancel() => Batch.Cancel();

    /// <summary>Sends the batch to the link and ends the pin leases it held.</summary>
    public bool Flush()
    {
        if (Batch.Count == 0)
        {
            Batch.Clear();
            return false;
        }

        try
        {
            _link.Transmit(Batch);
        }
        finally
        {
            Batch.Clear();
        }

        return true;
    }

    private void EnsureRoom()
    {
        if (Batch.IsFull)
        {
            Flush();
        }
    }
}
