using System.Security.Cryptography;
using Vso.Transport.Api;
using Vso.Transport.Links;
using Vso.Transport.Tcp;
using Vso.Transport.Tests.Tcp;

namespace Vso.Transport.Tests.Recovery;

/// <summary>A bulk transfer between two stacks over a <see cref="SimulatedNetwork"/>, checked by sha256.</summary>
internal static class RecoveryTransfer
{
    /// <summary>
    /// Client sends <paramref name="size"/> bytes to the server (one way), then shuts down. Time runs from the
    /// established connection to the server reading end of stream.
    /// </summary>
    public static Result OneWay(FaultOptions? forward, FaultOptions? reverse, int size, Action<TcpSettings> configure, TimeSpan propagation, TimeSpan? limit = null)
    {
        // Any ephemeral port: the ISN derives from the 4-tuple (RFC 6528), and no figure depends on it any more (RACK once
        // saw reordering with an ISN in the upper half of the sequence space, issue 11 item 4).
        using var net = new SimulatedNetwork(forward, reverse, configure, propagation);
        var (client, server) = net.Connect();
        var data = SimulatedNetwork.Pattern(size, 21);
        var start = net.Clock.NowMicroseconds;
        var sending = SimulatedNetwork.SendAllAsync(client, data, 256 * 1024);
        var receiving = SimulatedNetwork.ReceiveAllAsync(server);
        var finished = net.Run(() => receiving.IsCompleted && sending.IsCompleted, limit ?? TimeSpan.FromHours(2));
        var elapsed = net.Clock.NowMicroseconds - start;
        var intact = finished && receiving.IsCompletedSuccessfully && receiving.Result.Length == size
            && receiving.Result.Hash.AsSpan().SequenceEqual(SHA256.HashData(data)) && sending.IsCompletedSuccessfully;
        return new Result(intact, size, elapsed, client.GetInfo(), server.GetInfo(), $"finished={finished} receive={receiving.Status} send={sending.Status}");
    }

    internal sealed record Result(bool Intact, long Bytes, long VirtualMicroseconds, TcpConnectionInfo Sender, TcpConnectionInfo Receiver, string State)
    {
        /// <summary>Application bytes delivered per second of virtual time, in Mbit/s.</summary>
        public double GoodputMbps => Bytes * 8.0 / VirtualMicroseconds;

        public string Describe() => $"{State} virtual={VirtualMicroseconds / 1000} ms sender={Sender} receiver={Receiver}";
    }
}
