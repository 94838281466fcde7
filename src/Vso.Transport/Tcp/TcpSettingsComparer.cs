using System.Linq.Expressions;
using System.Reflection;

namespace Vso.Transport.Tcp;

/// <summary>
/// Whether two <see cref="TcpSettings"/> hold the same values, field by field, the mirror of the memberwise copy a
/// connection takes: built once from the type's fields, so a key added to the settings is compared without a line here.
/// Compares without allocating (the layer asks on every passive open whether its shared copy is still current).
/// </summary>
internal static class TcpSettingsComparer
{
    private static readonly Func<TcpSettings, TcpSettings, bool> Compare = Build();

    public static bool Equal(TcpSettings a, TcpSettings b) => ReferenceEquals(a, b) || Compare(a, b);

    private static Func<TcpSettings, TcpSettings, bool> Build()
    {
        var a = Expression.Parameter(typeof(TcpSettings), "a");
        var b = Expression.Parameter(typeof(TcpSettings), "b");
        Expression body = Expression.Constant(true);
        foreach (var field in typeof(TcpSettings).GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            // EqualityComparer<T>.Default: no boxing for value types; reference equality for arrays and delegates' targets.
            var comparer = typeof(EqualityComparer<>).MakeGenericType(field.FieldType);
            var defaultComparer = Expression.Property(null, comparer.GetProperty(nameof(EqualityComparer<int>.Default))!);
            var equals = comparer.GetMethod(nameof(EqualityComparer<int>.Equals), [field.FieldType, field.FieldType])!;
            body = Expression.AndAlso(body, Expression.Call(defaultComparer, equals, Expression.Field(a, field), Expression.Field(b, field)));
        }

        return Expression.Lambda<Func<TcpSettings, TcpSettings, bool>>(body, a, b).Compile();
    }
}
