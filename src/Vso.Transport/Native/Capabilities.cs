namespace Vso.Transport.Native;

/// <summary>Reads the calling thread's effective capabilities, so that a refusal can name the one that is missing.</summary>
internal static unsafe class Capabilities
{
    /// <summary>Whether the calling thread has <paramref name="capability"/> in its effective set; true if it cannot tell.</summary>
    public static bool Has(int capability)
    {
        var header = stackalloc uint[2] { LinuxNative.LINUX_CAPABILITY_VERSION_3, 0 };
        var data = stackalloc uint[6];
        if (LinuxNative.capget(header, data) < 0)
        {
            return true;
        }

        var word = capability < 32 ? data[0] : data[3];
        return (word & (1u << (capability & 31))) != 0;
    }

    /// <summary>
    /// "; this process lacks CAP_X and CAP_Y" for those of <paramref name="needed"/> (name, number) that the thread lacks
    /// (CAP_SYS_ADMIN stands in for all of them), or "" if it lacks none.
    /// </summary>
    public static string Lacking(params (string Name, int Number)[] needed)
    {
        if (Has(LinuxNative.CAP_SYS_ADMIN))
        {
            return "";
        }

        var missing = new List<string>();
        foreach (var (name, number) in needed)
        {
            if (!Has(number))
            {
                missing.Add(name);
            }
        }

        return missing.Count == 0 ? "" : "; this process lacks " + string.Join(" and ", missing);
    }
}
