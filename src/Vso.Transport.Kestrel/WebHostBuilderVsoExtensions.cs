using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Vso.Transport.Kestrel;

namespace Microsoft.AspNetCore.Hosting;

/// <summary>Registers the Vso user-space TCP/IPv4 transport with Kestrel.</summary>
public static class WebHostBuilderVsoExtensions
{
    /// <summary>
    /// Serves endpoints on the stack's address (Vso:Address) with the Vso transport, binding the "Vso" configuration
    /// section (appsettings.json, environment variables such as <c>Vso__Backend</c>); every other endpoint stays with
    /// Kestrel's Sockets transport. Options are validated when the host starts.
    /// </summary>
    public static IWebHostBuilder UseVsoTransport(this IWebHostBuilder builder) => builder.UseVsoTransport(static _ => { });

    /// <summary>As <see cref="UseVsoTransport(IWebHostBuilder)"/>, then <paramref name="configure"/> adjusts the bound options.</summary>
    public static IWebHostBuilder UseVsoTransport(this IWebHostBuilder builder, Action<VsoTransportOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        return builder.ConfigureServices((context, services) =>
        {
            // Bound key by key so that a value that does not parse reaches the validator with the others.
            var section = context.Configuration.GetSection(VsoTransportOptions.SectionName);
            services.AddOptions<VsoTransportOptions>()
                .Configure(o => VsoTransportOptionsBinder.Bind(section, o))
                .Configure(configure)
                .ValidateOnStart();
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<VsoTransportOptions>, VsoTransportOptionsValidator>());

            // Kestrel tries the factories last-registered first; ours claims only the stack's address (selector).
            services.AddSingleton<VsoTransportFactory>();
            services.AddSingleton<IConnectionListenerFactory>(static sp => sp.GetRequiredService<VsoTransportFactory>());
        });
    }
}
