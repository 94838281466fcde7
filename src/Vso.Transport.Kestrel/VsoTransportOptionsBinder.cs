using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Configuration;

namespace Vso.Transport.Kestrel;

/// <summary>
/// Binds the "Vso" section key by key. ConfigurationBinder stops at the first value it cannot convert, with an
/// InvalidOperationException that names the type rather than what the key accepts, and before any validator runs.
/// Here a value that does not parse leaves the key at its default and is reported by
/// <see cref="VsoTransportOptionsValidator"/> with every other failure, as <c>Vso:Key = 'value' is invalid: ...</c>.
/// Keys are found by reflection over the options classes, so a key added to them is bound without a change here.
/// </summary>
internal static class VsoTransportOptionsBinder
{
    // Kept beside the options rather than in them: nothing in the public type has to change.
    private static readonly ConditionalWeakTable<VsoTransportOptions, List<string>> Failures = new();

    public static void Bind(IConfiguration section, VsoTransportOptions options)
    {
        ArgumentNullException.ThrowIfNull(section);
        ArgumentNullException.ThrowIfNull(options);
        var failures = Failures.GetValue(options, static _ => []);
        BindObject(section, options, "", failures);
    }

    /// <summary>The values that did not parse, each as a complete message.</summary>
    public static IReadOnlyList<string> FailuresOf(VsoTransportOptions options) =>
        Failures.TryGetValue(options, out var failures) ? failures : [];

    private static void BindObject(IConfiguration section, object target, string prefix, List<string> failures)
    {
        foreach (var property in target.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetIndexParameters().Length != 0)
            {
                continue;
            }

            var key = prefix + property.Name;
            var child = section.GetSection(property.Name);
            var nullable = Nullable.GetUnderlyingType(property.PropertyType);
            var type = nullable ?? property.PropertyType;
            if (IsScalar(type))
            {
                // A null value is an absent key (or a section with children, which a scalar cannot take).
                if (property.CanWrite && child.Value is { } text)
                {
                    if (!TryParse(text, type, nullable is not null, out var value, out var keepDefault))
                    {
                        failures.Add(VsoTransportOptionsValidator.Invalid(key, text, Accepted(key, type, nullable is not null)));
                    }
                    else if (!keepDefault)
                    {
                        property.SetValue(target, value);
                    }
                }
            }
            else if (type.IsClass && IsOptionsSection(type) && property.GetValue(target) is { } nested)
            {
                BindObject(child, nested, key + ":", failures);
            }
            else if (child.Exists())
            {
                BindOther(child, target, property, key, failures);
            }
        }

        ReportUnknownKeys(section, target.GetType(), prefix, failures);
    }

    /// <summary>
    /// A key that names no option (a typo, a key from another version) would otherwise be ignored and its default used
    /// without a word: it fails start-up like a bad value, with the nearest key that exists.
    /// </summary>
    private static void ReportUnknownKeys(IConfiguration section, Type type, string prefix, List<string> failures)
    {
        var names = type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Select(static p => p.Name).ToList();
        foreach (var child in section.GetChildren())
        {
            if (names.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                continue;
            }

            var nearest = names.MinBy(name => Distance(name.ToUpperInvariant(), child.Key.ToUpperInvariant()));
            var shown = child.Value ?? "(a section)";
            failures.Add(VsoTransportOptionsValidator.Invalid(
                prefix + child.Key,
                shown,
                $"there is no such key; did you mean Vso:{prefix}{nearest}? The keys are listed in the README (\"Kestrel transport\")"));
        }
    }

    // Levenshtein distance, for the suggestion: configuration keys are short, start-up only.
    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    // Sections are the options classes of this transport and of the libraries it configures (the pinned block pool's).
    private static bool IsOptionsSection(Type type) =>
        type.Assembly == typeof(VsoTransportOptions).Assembly || type.Assembly == typeof(Vso.MemoryPinning.PinnedBlockPoolOptions).Assembly;

    // Collections and other shapes: ConfigurationBinder's own conversion, its failure reported under the key.
    private static void BindOther(IConfigurationSection child, object target, PropertyInfo property, string key, List<string> failures)
    {
        try
        {
            if (property.CanWrite)
            {
                property.SetValue(target, child.Get(property.PropertyType));
            }
            else if (property.GetValue(target) is { } instance)
            {
                child.Bind(instance);
            }
        }
        catch (InvalidOperationException ex)
        {
            var shown = child.Value ?? string.Join(",", child.GetChildren().Select(static c => c.Value));
            failures.Add(VsoTransportOptionsValidator.Invalid(key, shown, ex.Message.TrimEnd('.')));
        }
    }

    private static bool IsScalar(Type type) =>
        type == typeof(string) || type == typeof(bool) || type.IsEnum || type == typeof(TimeSpan) || IsNumber(type);

    private static bool IsNumber(Type type) => Type.GetTypeCode(type) is
        TypeCode.Byte or TypeCode.UInt16 or TypeCode.UInt32 or TypeCode.UInt64 or TypeCode.Int16 or TypeCode.Int32 or TypeCode.Int64 or TypeCode.Double;

    private static bool TryParse(string text, Type type, bool nullable, out object? value, out bool keepDefault)
    {
        value = null;
        keepDefault = false;
        if (type == typeof(string))
        {
            value = text;
            return true;
        }

        var trimmed = text.Trim();
        if (trimmed.Length == 0)
        {
            // Empty means "not set": null for an optional key (Vso__Mtu=), the default otherwise.
            keepDefault = !nullable;
            return true;
        }

        if (type == typeof(bool))
        {
            var ok = bool.TryParse(trimmed, out var b);
            value = b;
            return ok;
        }

        if (type.IsEnum)
        {
            // Names only: Enum.TryParse would also take "7" or "Tap,AfPacket".
            foreach (var name in Enum.GetNames(type))
            {
                if (string.Equals(name, trimmed, StringComparison.OrdinalIgnoreCase))
                {
                    value = Enum.Parse(type, name);
                    return true;
                }
            }

            return false;
        }

        if (type == typeof(TimeSpan))
        {
            // A bare number would be read as days ("200" = 200 days): require the hh:mm:ss form.
            if (trimmed.Contains(':', StringComparison.Ordinal) && TimeSpan.TryParse(trimmed, CultureInfo.InvariantCulture, out var span))
            {
                value = span;
                return true;
            }

            return false;
        }

        if (Type.GetTypeCode(type) == TypeCode.Double)
        {
            var ok = double.TryParse(trimmed, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d);
            value = d;
            return ok;
        }

        if (!long.TryParse(trimmed, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
        {
            return false;
        }

        try
        {
            value = Convert.ChangeType(n, type, CultureInfo.InvariantCulture);
            return true;
        }
        catch (OverflowException)
        {
            return false;
        }
    }

    /// <summary>What a key accepts, in the words its range check uses where it has one.</summary>
    internal static string Accepted(string key, Type type, bool nullable)
    {
        var orEmpty = nullable ? ", or leave it empty" : "";
        if (type == typeof(bool))
        {
            return "use true or false" + orEmpty;
        }

        if (type.IsEnum)
        {
            var names = Enum.GetNames(type);
            var list = names.Length == 1 ? names[0] : string.Join(", ", names[..^1]) + " or " + names[^1];
            return "use " + list + VsoTransportOptionsValidator.EnumNote(key) + orEmpty;
        }

        var range = VsoTransportOptionsValidator.AcceptedRange(key);
        if (type == typeof(TimeSpan))
        {
            return "use a duration written [d.]hh:mm:ss[.fffffff], such as 00:00:00.2 for 200 ms" + (range is null ? "" : $" ({range})") + orEmpty;
        }

        return "use " + (range ?? (Type.GetTypeCode(type) == TypeCode.Double ? "a number" : "a whole number")) + orEmpty;
    }
}
