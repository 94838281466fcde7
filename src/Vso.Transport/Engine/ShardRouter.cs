using System.Diagnostics.Metrics;
using Vso.Transport.Links;

namespace Vso.Transport.Engine;

/// <summary>
/// The first receiver of a shard's link when a stack runs several shards: each frame goes to the shard that owns it
/// (<see cref="FlowHash.Route"/>). Its own frames go straight to its interface; a frame the link put on the wrong queue (an
/// ARP reply, which every shard must learn from; an ICMP error for a flow of another shard; a segment the device hashed
/// elsewhere) is copied into the owner's <see cref="ShardHandoverQueue"/> and counted in <c>vso.shard.handovers</c>, or,
/// when that queue is full, dropped and counted in <c>vso.shard.handover_drops</c>. Engine thread of its shard only.
/// </summary>
internal sealed class ShardRouter : IFrameReceiver
{
    private readonly NetworkStack _self;
    private readonly int _index;
    private readonly NetworkStack[] _shards;
    private readonly ShardHandoverQueue?[] _outbound;
    private readonly bool[] _wakePending;
    private readonly Counter<long> _handovers;
    private readonly Counter<long> _drops;
    private bool _anyWakePending;

    public ShardRouter(NetworkStack self, int index, NetworkStack[] shards, ShardHandoverQueue?[] outbound, Meter meter)
    {
        _self = self;
        _index = index;
        _shards = shards;
        _outbound = outbound;
        _wakePending = new bool[shards.Length];
        _handovers = meter.CreateCounter<long>("vso.shard.handovers", "{frame}", "Frames a shard received and handed to the shard that owns them (ARP to every shard).");
        _drops = meter.CreateCounter<long>("vso.shard.handover_drops", "{frame}", "Frames dropped because the owning shard's hand-over queue was full.");
    }

    /// <summary>Frames this shard handed to another.</summary>
    public long HandedOver { get; private set; }

    /// <summary>
    /// Frames that belonged to one other shard (TCP segments, ICMP errors quoting them), handed over or dropped; ARP,
    /// which goes to every shard, excluded. A device whose queue choice agrees with <see cref="FlowHash"/> keeps it at 0
    /// on every shard but 0 (which gets the ICMP errors).
    /// </summary>
    public long Misrouted { get; private set; }

    /// <summary>Frames this shard could not hand over (the owner's queue was full).</summary>
    public long HandoverDrops { get; private set; }

    public void OnFrame(ReadOnlySpan<byte> frame)
    {
        var route = FlowHash.Route(frame, _shards.Length, out var shard);
        if (route == FrameRoute.Everyone)
        {
            for (var i = 0; i < _shards.Length; i++)
            {
                if (i != _index)
                {
                    HandOver(i, frame);
                }
            }

            _self.Interface.OnFrame(frame);
        }
        else if (shard == _index)
        {
            _self.Interface.OnFrame(frame);
        }
        else
        {
            Misrouted++;
            HandOver(shard, frame);
        }
    }

    private void HandOver(int shard, ReadOnlySpan<byte> frame)
    {
        if (_outbound[shard]!.TryEnqueue(frame))
        {
            HandedOver++;
            _handovers.Add(1);
            _wakePending[shard] = true;
            _anyWakePending = true;
        }
        else
        {
            HandoverDrops++;
            _drops.Add(1);
        }
    }

    /// <summary>After a receive pass: wakes each shard given frames, once (it may sleep in its link's poll).</summary>
    public void WakeReceivers()
    {
        if (!_anyWakePending)
        {
            return;
        }

        _anyWakePending = false;
        for (var i = 0; i < _wakePending.Length; i++)
        {
            if (_wakePending[i])
            {
                _wakePending[i] = false;
                _shards[i].Wake?.Invoke();
            }
        }
    }
}
