namespace Vso.Transport.Tests.Tcp;
public sealed class DebugTests
{
    [Fact]
    public void Debug_loss()
    {
        var (cf, sf) = FaultCases.Get("loss-5%");
        using var net = new SimulatedNetwork(cf, sf);
        var (client, server) = net.Connect();
        var up = SimulatedNetwork.Pattern(4<<20, 1);
        var sendUp = SimulatedNetwork.SendAllAsync(client, up, 256 * 1024);
        var receiveUp = SimulatedNetwork.ReceiveAllAsync(server);
        var sendDown = SimulatedNetwork.SendAllAsync(server, SimulatedNetwork.Pattern(4 << 20, 2), 256 * 1024);
        var receiveDown = SimulatedNetwork.ReceiveAllAsync(client);
        long lastTo = 0;
        for (int i = 0; i < 4000; i++)
        {
            net.Driver.Run(TimeSpan.FromMilliseconds(5));
            var c = client.GetInfo(); var s = server.GetInfo();
            if (c.Timeouts + s.Timeouts != lastTo || i % 200 == 0) {
            lastTo = c.Timeouts + s.Timeouts;
            Console.WriteLine($"t={net.Clock.NowMicroseconds/1000} C: {c.State} una={c.SendUnacknowledged} nxt={c.SendNext} rnxt={c.ReceiveNext} cwnd={c.CongestionWindow} to={c.Timeouts} rtx={c.RetransmittedSegments} pw={client.Tcp!.PeerWindow} rd={client.Tcp.ReadableBytes} ranges={client.Tcp.OutOfOrderRanges} drop={client.Tcp.Statistics.DroppedSegments}| S: una={s.SendUnacknowledged} nxt={s.SendNext} rnxt={s.ReceiveNext} cwnd={s.CongestionWindow} to={s.Timeouts} pw={server.Tcp!.PeerWindow} rd={server.Tcp.ReadableBytes} ranges={server.Tcp.OutOfOrderRanges} drop={server.Tcp.Statistics.DroppedSegments} wire={net.Client.WireCounters.TotalDropped}/{net.Server.WireCounters.TotalDropped}");
            }
            if (c.State == Vso.Transport.Tcp.TcpState.Closed) break;
        }
    }
}
