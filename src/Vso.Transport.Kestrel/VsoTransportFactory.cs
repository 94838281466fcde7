using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Vso.MemoryPinning;
using Vso.Transport.Api;
using Vso.Transport.Links;
using Vso.Transport.Wire;

namespace Vso.Transport.Kestrel;

/// <summary>
/// Kestrel's transport factory for endpoints on the stack's address. As an <see cref="IConnectionListenerFactorySelector"/>
/// it claims only IPv4 endpoints whose address is the stack's (Vso:Address); Kestrel gives every other endpoint to the
/// next factory, normally its Sockets transport, so one server listens on both. The stack (link, engine thread, pinned
/// pool) starts at the first bind and stops when the host disposes the factory.
/// </summary>
internal sealed class VsoTransportFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector, IDisposable
{
    private readonly Lazy<VsoTransportOptions> _options;
    private readonly Func<VsoStack> _createStack;
    private readonly ILogger _log;
    private readonly Lock _gate = new();
    private readonly List<VsoConnectionListener> _listeners = [];
    private readonly Lazy<IPAddress> _address;
    private VsoStack? _stack;
    private PinnedBlockPool? _pool;
    private PinnedBlockClasses? _blocks;
    private Timer? _trimTimer;
    private ProxyProtocolPolicy? _proxy;
    private bool _disposed;

    /// <summary>How often the pinned pools give back slabs unused since the last time, so a peak's memory is returned.</summary>
    private static readonly TimeSpan TrimInterval = TimeSpan.FromSeconds(10);

    // Kestrel builds its factories with the server, before options are validated at start: read them lazily.
    public VsoTransportFactory(IOptions<VsoTransportOptions> options, ILoggerFactory loggerFactory)
        : this(new Lazy<VsoTransportOptions>(() => options.Value), null, loggerFactory)
    {
    }

    /// <summary>For tests: <paramref name="createStack"/> builds the stack (over a simulated link, for example).</summary>
    internal VsoTransportFactory(VsoTransportOptions options, Func<VsoStack>? createStack, ILoggerFactory? loggerFactory)
        : this(new Lazy<VsoTransportOptions>(options), createStack, loggerFactory)
    {
    }

    private VsoTransportFactory(Lazy<VsoTransportOptions> options, Func<VsoStack>? createStack, ILoggerFactory? loggerFactory)
    {
        _options = options;
        loggerFactory ??= NullLoggerFactory.Instance;
        _log = loggerFactory.CreateLogger("Vso.Transport.Kestrel");
        _address = new Lazy<IPAddress>(() => VsoTransportOptionsValidator.TryParseCidr(_options.Value.Address, out var address, out _) ? address : IPAddress.None);
        _createStack = createStack ?? (() => CreateStack(loggerFactory));
    }

    internal VsoStack? Stack => _stack;

    /// <summary>The transport's own instruments (PROXY protocol, drain), on a meter named as the stack's.</summary>
    internal VsoTransportMetrics Metrics { get; } = new();

    internal PinnedBlockPool? Pool => _pool;

    /// <summary>Listeners bound and not yet unbound.</summary>
    internal int ListenerCount
    {
        get
        {
            lock (_gate)
            {
                return _listeners.Count;
            }
        }
    }

    /// <summary>Bytes of pinned blocks rented from the transport's pools (Kestrel's and the writers', every size class); 0 after a clean stop.</summary>
    internal long PinnedBytes => _pool?.PinnedBytes ?? 0;

    public bool CanBind(EndPoint endpoint) =>
        endpoint is IPEndPoint ip && ip.Address.Equals(_address.Value);

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not IPEndPoint ip || !ip.Address.Equals(_address.Value))
        {
            throw new NotSupportedException($"The Vso transport binds only endpoints on its address {_address.Value} (Vso:Address), not {endpoint}.");
        }

        VsoConnectionListener listener;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var failures = VsoTransportOptionsValidator.Check(_options.Value);
            if (failures.Count > 0)
            {
                // Normally caught at start (ValidateOnStart); a factory made by hand is checked here.
                throw new OptionsValidationException(VsoTransportOptions.SectionName, typeof(VsoTransportOptions), failures);
            }

            EnsureStarted();
            _proxy ??= ProxyProtocolPolicy.From(_options.Value);
            listener = new VsoConnectionListener(_stack!, _blocks!, _options.Value, ip, _log, Forget, Metrics, _proxy);
            listener.Bind();
            _listeners.Add(listener);
        }

        return ValueTask.FromResult<IConnectionListener>(listener);
    }

    private void Forget(VsoConnectionListener listener)
    {
        lock (_gate)
        {
            _listeners.Remove(listener);
        }
    }

    private void EnsureStarted()
    {
        var options = _options.Value;
        if (_stack is not null)
        {
            return;
        }

        var pinning = options.Pinning;

        // AF_XDP in Pinned mode: the pool's first slabs form the contiguous region the sockets register as their UMEM.
        var unit = Math.Max(4096, pinning.BlockSize);
        var region = options.Backend == VsoBackend.AfXdp && options.IdentifyMode == Tcp.IdentifyMode.Pinned ? options.AfXdp.UmemBytes / unit * unit : 0;
        _pool = new PinnedBlockPool(new PinnedBlockPoolOptions
        {
            BlockSize = pinning.BlockSize,
            SlabSize = Math.Max(pinning.SlabSize, pinning.BlockSize),
            MaxBytes = pinning.MaxBytes,
            Mlock = pinning.Mlock,
            ContiguousBytes = region,
        });
        _blocks = new PinnedBlockClasses(_pool);
        try
        {
            _stack = _createStack();
            _stack.Start();
            _trimTimer = new Timer(static blocks => ((PinnedBlockClasses)blocks!).TrimExcess(), _blocks, TrimInterval, TrimInterval);
        }
        catch
        {
            _stack?.Dispose();
            _stack = null;
            _blocks.Dispose();
            _blocks = null;
            _pool.Dispose();
            _pool = null;
            throw;
        }
    }

    private VsoStack CreateStack(ILoggerFactory loggerFactory)
    {
        var options = _options.Value;
        var stackOptions = StackFactory.ToStackOptions(options);
        var stack = StackFactory.CreateStack(options, stackOptions, loggerFactory, _pool);
        _log.StackUp($"{stackOptions.Address}", stackOptions.PrefixLength, options.Backend.ToString(), options.Interface, stack.HardwareAddress.ToString(), stack.Mtu);
        return stack;
    }

    /// <summary>Stops the stack (connections still open fail, their blocks return to the pool), closes the link, frees the pool.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _trimTimer?.Dispose();
            foreach (var listener in _listeners.ToArray())
            {
                listener.UnbindAsync().AsTask().GetAwaiter().GetResult();
            }

            if (_stack is not null)
            {
                _stack.Dispose();
                _log.StackDown(_stack.Address.ToString(), PinnedBytes);
            }

            _blocks?.Dispose();
            _pool?.Dispose();
            Metrics.Dispose();
        }
    }
}
