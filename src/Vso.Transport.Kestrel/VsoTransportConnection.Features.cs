using System.Collections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Vso.Transport.Kestrel;

/// <summary>
/// The connection is its own feature collection, as Kestrel's TransportConnection is: the transport's features are the
/// connection itself (and the PROXY header's), found by type without a dictionary per connection; features others set
/// (Kestrel adds its heartbeat, completion and lifetime features) go to a short list, which also overrides a built-in one.
/// </summary>
internal sealed partial class VsoTransportConnection : IFeatureCollection
{
    private static readonly Type[] BuiltInTypes =
    [
        typeof(IConnectionIdFeature),
        typeof(IConnectionTransportFeature),
        typeof(IConnectionItemsFeature),
        typeof(IMemoryPoolFeature),
        typeof(IConnectionLifetimeFeature),
        typeof(IConnectionEndPointFeature),
        typeof(IVsoTcpInfoFeature),
        typeof(IProxyProtocolFeature),
    ];

    // Set by others, in order; a null value is a feature removed.
    private List<KeyValuePair<Type, object?>>? _extraFeatures;
    private int _featureRevision;

    public override IFeatureCollection Features => this;

    bool IFeatureCollection.IsReadOnly => false;

    int IFeatureCollection.Revision => _featureRevision;

    object? IFeatureCollection.this[Type key]
    {
        get => GetFeature(key);
        set => SetFeature(key, value);
    }

    TFeature? IFeatureCollection.Get<TFeature>()
        where TFeature : default => (TFeature?)GetFeature(typeof(TFeature));

    void IFeatureCollection.Set<TFeature>(TFeature? instance)
        where TFeature : default => SetFeature(typeof(TFeature), instance);

    IEnumerator<KeyValuePair<Type, object>> IEnumerable<KeyValuePair<Type, object>>.GetEnumerator() => EnumerateFeatures().GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => EnumerateFeatures().GetEnumerator();

    private object? GetFeature(Type key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_extraFeatures is { } extra)
        {
            foreach (var pair in extra)
            {
                if (pair.Key == key)
                {
                    return pair.Value;
                }
            }
        }

        return BuiltInFeature(key);
    }

    private object? BuiltInFeature(Type key)
    {
        if (key == typeof(IProxyProtocolFeature))
        {
            return _proxyFeature;
        }

        return Array.IndexOf(BuiltInTypes, key) >= 0 ? this : null;
    }

    private void SetFeature(Type key, object? value)
    {
        ArgumentNullException.ThrowIfNull(key);
        _featureRevision++;
        var extra = _extraFeatures ??= new List<KeyValuePair<Type, object?>>(4);
        for (var i = 0; i < extra.Count; i++)
        {
            if (extra[i].Key == key)
            {
                extra[i] = new KeyValuePair<Type, object?>(key, value);
                return;
            }
        }

        extra.Add(new KeyValuePair<Type, object?>(key, value));
    }

    private IEnumerable<KeyValuePair<Type, object>> EnumerateFeatures()
    {
        foreach (var type in BuiltInTypes)
        {
            if (GetFeature(type) is { } feature)
            {
                yield return new KeyValuePair<Type, object>(type, feature);
            }
        }

        if (_extraFeatures is { } extra)
        {
            foreach (var pair in extra)
            {
                if (pair.Value is not null && Array.IndexOf(BuiltInTypes, pair.Key) < 0)
                {
                    yield return new KeyValuePair<Type, object>(pair.Key, pair.Value);
                }
            }
        }
    }
}
