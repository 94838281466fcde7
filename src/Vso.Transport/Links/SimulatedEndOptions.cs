using Vso.Transport.Engine;

namespace Vso.Transport.Links;

/// <summary>One end of a <see cref="SimulatedWire"/>, as the link options a stack opens.</summary>
internal sealed class SimulatedEndOptions(SimulatedWire wire, bool isA) : VsoLinkOptions
{
    private protected override ILink OpenLink(LinkOpenContext context) => wire.Open(isA, context.Clock);
}

/// <summary>A simulated wire whose two links are made when the first end is opened, on that stack's clock.</summary>
internal sealed class SimulatedWire(SimulatedLinkOptions options)
{
    private readonly Lock _gate = new();
    private SimulatedLink? _a;
    private SimulatedLink? _b;
    private IClock? _clock;
    private bool _openedA;
    private bool _openedB;

    public SimulatedLink Open(bool isA, IClock clock)
    {
        lock (_gate)
        {
            if (_clock is null)
            {
                _clock = clock;
                (_a, _b) = SimulatedLink.CreatePair(clock, options);
            }
            else if (!ReferenceEquals(_clock, clock))
            {
                throw new InvalidOperationException("Both ends of a simulated wire must run on the same clock: both in real time, or both on one VirtualTimeDriver.");
            }

            ref var opened = ref isA ? ref _openedA : ref _openedB;
            if (opened)
            {
                throw new InvalidOperationException($"End {(isA ? "A" : "B")} of this simulated wire is already open: each end serves one stack.");
            }

            opened = true;
            return isA ? _a! : _b!;
        }
    }
}
