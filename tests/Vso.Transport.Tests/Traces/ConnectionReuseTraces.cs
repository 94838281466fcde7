using System.Reflection;
using System.Runtime.InteropServices;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Tcp;
using Vso.Transport.Tcp.Recovery;
using static Vso.Transport.Tests.Traces.TraceFlags;

namespace Vso.Transport.Tests.Traces;

/// <summary>
/// Issue 12 item 4: an ended connection whose owner let go (<see cref="VsoConnectionEndpoint.Release"/>) is reused for
/// the next passive open. The new connection starts as RFC 9293 §3.10.7.2 starts one (its own ISS, its own SYN's options,
/// the initial RTO of RFC 6298 §2.1, no SACK scoreboard, no timer), the released endpoint reaches nothing, and the pool
/// is bounded.
/// </summary>
public sealed class ConnectionReuseTraces
{
    private const uint R = 1001; // the peer's first data sequence number (ISN 1000)

    [Fact]
    public void A_released_connection_is_reused_and_the_next_one_sees_none_of_its_state()
    {
        using var peer = new RawPeer(static s => s.IdentifyMode = IdentifyMode.Copy);
        using var host = new Host();
        var layer = peer.Stack.Core.Tcp;
        using var listener = peer.Stack.ListenEndpoints(80, null, host.Accept);

        var (first, iss) = LiveAndEnd(peer, host);
        var old = first.Tcp!;
        Assert.Equal(0, layer.IdleConnections);
        first.Release();
        peer.Pump();
        Assert.Equal(1, layer.IdleConnections);

        // The released endpoint reads as closed and acts on nothing.
        Assert.False(first.IsOpen);
        Assert.Equal(TcpState.Closed, first.State);
        Assert.Equal(TcpState.Closed, first.GetInfo().State);
        Assert.Equal(0, first.ReadableBytes);
        Assert.Throws<ObjectDisposedException>(() => first.Enqueue(host.Address, 10, 1, 1));
        Assert.Equal(40000, first.RemoteEndPoint!.Port);

        // RFC 9293 §3.10.7.2: a new SYN, without SACK or window scaling this time, from another port.
        peer.Port = 40001;
        peer.Send(Syn, seq: 5000, options: RawPeer.SynOptions());
        var synAck = peer.Expect(SynAck, ack: 5001);
        Assert.False(synAck.Options.SackPermitted);
        Assert.True(synAck.Options.WindowScale < 0 || !synAck.Options.HasTimestamp, $"options of {synAck}");
        Assert.NotEqual(iss, synAck.Seq);
        peer.Send(Ack, seq: 5001, ack: synAck.Seq + 1);
        var second = host.Accepted!;
        Assert.NotSame(first, second);
        var reused = second.Tcp!;
        Assert.Same(old, reused);
        Assert.Equal(1, reused.Generation);
        Assert.Equal(0, layer.IdleConnections);
        Assert.Equal(1, layer.ConnectionsBuilt);

        // None of the first connection's state: sequence numbers, SACK, RTT and backoff, counters, timers, options.
        Assert.Equal(new ConnectionId(RawPeer.StackAddress, 80, RawPeer.PeerAddress, 40001), reused.Id);
        Assert.Equal(TcpState.Established, reused.State);
        Assert.Equal(synAck.Seq, reused.Sender.InitialSendSequence.Value);
        Assert.Equal(synAck.Seq + 1, reused.Sender.SendUnacknowledged.Value);
        Assert.Equal(5001u, reused.ReceiveNext);
        Assert.False(reused.SackPermitted);
        Assert.Equal(0, reused.Sender.Scoreboard.Count);
        Assert.Equal(0, reused.Receiver.OutOfOrderRanges);
        Assert.Equal(0, reused.Sender.PeerWindowShift);
        Assert.True(reused.Sender.RtoMicroseconds <= 1_000_000, $"RTO {reused.Sender.RtoMicroseconds} µs: the first connection's backoff survived");
        Assert.Equal(0, reused.Statistics.SegmentsRetransmitted);
        Assert.Equal(0, reused.Statistics.Timeouts);
        Assert.Equal(0, reused.Statistics.OutOfOrderSegments);
        Assert.Equal(0, reused.Sender.RetransmitDeadline);
        Assert.Null(reused.Error);

        // A stale call on the first endpoint leaves the second connection alone.
        first.Abort();
        first.ShutdownSend();
        first.Close();
        first.Release();
        peer.ExpectNothing();
        Assert.Equal(TcpState.Established, second.State);
        Assert.Equal(40000, first.RemoteEndPoint!.Port);
        Assert.Equal(40001, second.RemoteEndPoint!.Port);

        // And the reused connection works: bytes both ways.
        peer.Send(PshAck, seq: 5001, ack: synAck.Seq + 1, payload: [1, 2, 3]);
        peer.Expect(Ack, seq: synAck.Seq + 1, ack: 5004);
        Assert.Equal(3, second.Read(new byte[16]));
        second.Enqueue(host.Address, 5, 1, 1);
        peer.Pump();
        var data = peer.Expect(PshAck, seq: synAck.Seq + 1, ack: 5004);
        Assert.Equal(5, data.Length);
    }

    /// <summary>
    /// Every field a connection starts from, compared by reflection down through its sender, receiver and their parts: a
    /// recycled connection equals one built new, except for what only holds capacity (arrays, descriptor pools).
    /// </summary>
    [Fact]
    public void A_recycled_connection_equals_a_new_one_field_by_field()
    {
        using var peer = new RawPeer(static s => s.IdentifyMode = IdentifyMode.Copy);
        using var host = new Host();
        var layer = peer.Stack.Core.Tcp;
        using var listener = peer.Stack.ListenEndpoints(80, null, host.Accept);

        var (first, _) = LiveAndEnd(peer, host);
        var old = first.Tcp!;
        Assert.True(old.Statistics.SegmentsRetransmitted > 0 && old.Statistics.OutOfOrderSegments > 0, "the first connection should have lived: retransmitted, held out-of-order data");
        first.Release();
        peer.Pump();

        var id = new ConnectionId(RawPeer.StackAddress, 80, RawPeer.PeerAddress, 40002);
        Assert.True(old.TryRecycle(id, layer.SharedSettings()));
        var fresh = new TcpConnection(layer, id, observer: null);
        var differences = new List<string>();
        var seen = new HashSet<object>(ReferenceEqualityComparer.Instance);
        Compare(old, fresh, "connection", differences, seen);

        // The RACK-TLP it kept, reused at its next handshake, against one built and attached to the same sender.
        var spare = (RackTlpRecovery)typeof(TcpSender).GetField("_spareRecovery", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(old.Sender)!;
        spare.Reuse();
        var built = new RackTlpRecovery();
        built.Attach(old.Sender);
        Compare(spare, built, "recovery", differences, seen);
        Assert.True(differences.Count == 0, "recycled != new: " + string.Join("; ", differences));
    }

    [Fact]
    public void The_pool_of_ended_connections_is_bounded()
    {
        using var peer = new RawPeer();
        var layer = peer.Stack.Core.Tcp;
        for (var i = 0; i < TcpLayer.ConnectionPoolCapacity + 10; i++)
        {
            var connection = new TcpConnection(layer, new ConnectionId(RawPeer.StackAddress, 80, RawPeer.PeerAddress, (ushort)(1024 + i)), observer: null);
            connection.ForceClose();
            connection.ReleaseByOwner();
        }

        peer.Pump();
        Assert.Equal(TcpLayer.ConnectionPoolCapacity, layer.IdleConnections);
    }

    /// <summary>
    /// A passive open with SACK and window scaling; out-of-order bytes (a SACK range), a send retransmitted after the RTO
    /// (RFC 6298 §5.4, backoff), then the peer's close and ours (CLOSE-WAIT, LAST-ACK, CLOSED). The endpoint is the host's.
    /// </summary>
    private static (VsoConnectionEndpoint Endpoint, uint Iss) LiveAndEnd(RawPeer peer, Host host)
    {
        peer.Send(Syn, seq: 1000, options: RawPeer.SynOptions(windowScale: 7, sackPermitted: true));
        var synAck = peer.Expect(SynAck, ack: R);
        Assert.True(synAck.Options.SackPermitted);
        var s = synAck.Seq + 1;
        peer.Send(Ack, seq: R, ack: s);
        var endpoint = host.Accepted!;

        peer.Send(PshAck, seq: R + 100, ack: s, payload: new byte[100]);
        var sack = peer.Expect(Ack, seq: s, ack: R);
        Assert.Equal(1, sack.Options.SackBlockCount);

        endpoint.Enqueue(host.Address, 1000, 1, 1);
        peer.Pump();
        peer.Expect(PshAck, seq: s, ack: R);
        var retransmission = peer.Next(TimeSpan.FromSeconds(2));
        Assert.Equal(s, retransmission.Seq);

        peer.Send(PshAck, seq: R, ack: s + 1000, payload: new byte[100]);
        peer.Expect(Ack, seq: s + 1000, ack: R + 200);
        peer.Send(FinAck, seq: R + 200, ack: s + 1000);
        peer.Expect(Ack, seq: s + 1000, ack: R + 201);
        Assert.Equal(200, endpoint.Read(new byte[512]));
        endpoint.ShutdownSend();
        peer.Pump();
        peer.Expect(FinAck, seq: s + 1000, ack: R + 201);
        peer.Send(Ack, seq: R + 201, ack: s + 1001);
        Assert.True(host.Closed);
        Assert.True(endpoint.Tcp!.IsTerminated);
        peer.Discard();
        return (endpoint, synAck.Seq);
    }

    private static void Compare(object reused, object fresh, string path, List<string> differences, HashSet<object> seen)
    {
        if (!seen.Add(reused))
        {
            return;
        }

        for (var type = reused.GetType(); type is not null && type != typeof(object); type = type.BaseType)
        {
            foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                if (field.Name.Contains("Generation", StringComparison.Ordinal) || field.Name.Contains("spare", StringComparison.Ordinal))
                {
                    // The incarnation, and parts kept for the next handshake (compared below once reused).
                    continue;
                }

                if (field.FieldType.IsArray || field.FieldType.Namespace == "System.Collections.Generic")
                {
                    // Capacity kept on purpose (ring, ranges, descriptor pool): only the counts beside them matter.
                    continue;
                }

                var a = field.GetValue(reused);
                var b = field.GetValue(fresh);
                var where = path + "." + field.Name;
                if (ReferenceEquals(a, b))
                {
                    continue;
                }

                if (a is null || b is null)
                {
                    if (a is not null || b is not null)
                    {
                        differences.Add($"{where}: {a ?? "null"} against {b ?? "null"}");
                    }

                    continue;
                }

                var fieldType = a.GetType();
                if (fieldType.IsValueType || a is string)
                {
                    if (!a.Equals(b))
                    {
                        differences.Add($"{where}: {a} against {b}");
                    }
                }
                else if (a is TcpConnection or TcpLayer or TcpSettings or MemoryBudget)
                {
                    // Back references and shared objects: the same on both sides, or each its own owner.
                }
                else if (fieldType.Namespace?.StartsWith("Vso.Transport.Tcp", StringComparison.Ordinal) == true)
                {
                    if (fieldType != b.GetType())
                    {
                        differences.Add($"{where}: {fieldType.Name} against {b.GetType().Name}");
                    }
                    else
                    {
                        Compare(a, b, where, differences, seen);
                    }
                }
                else if (!ReferenceEquals(a, b))
                {
                    differences.Add($"{where}: {fieldType.Name} instance not compared");
                }
            }
        }
    }

    /// <summary>The embedding's side of the endpoints: it accepts, observes, and owns the bytes it sends (a pinned array).</summary>
    private sealed class Host : IVsoEndpointObserver, IVsoSendHost, IDisposable
    {
        private readonly byte[] _bytes = GC.AllocateArray<byte>(4096, pinned: true);

        public nint Address => Marshal.UnsafeAddrOfPinnedArrayElement(_bytes, 0);

        public VsoConnectionEndpoint? Accepted { get; private set; }

        public bool Closed { get; private set; }

        public bool Accept(VsoConnectionEndpoint endpoint)
        {
            endpoint.Attach(this, this);
            Accepted = endpoint;
            Closed = false;
            return true;
        }

        public void OnTurn()
        {
        }

        public void OnEstablished()
        {
        }

        public void OnReadable()
        {
        }

        public bool TryTakeInOrder(ReadOnlySpan<byte> payload) => false;

        public void OnClosed(TcpConnectionException? error) => Closed = true;

        public void CopyTo(VsoSendRange range, int offset, Span<byte> destination) =>
            _bytes.AsSpan((int)(range.Address + offset - Address), destination.Length).CopyTo(destination);

        public PinLease Lease(VsoSendRange range, int offset, int length) => throw new NotSupportedException("copy mode");

        public void Acknowledged(VsoSendRange range)
        {
        }

        public void Failed(VsoSendRange range, Exception error)
        {
        }

        public void Dispose()
        {
        }
    }
}
