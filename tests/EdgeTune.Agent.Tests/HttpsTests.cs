using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using EdgeTune.Agent.Config;
using EdgeTune.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace EdgeTune.Agent.Tests;

public sealed class HttpsTests
{
    [Fact]
    public async Task Serves_https_with_the_configured_certificate()
    {
        using var dir = new TempDir();
        using (var key = RSA.Create(2048))
        {
            var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            File.WriteAllBytes(dir.File("agent.pfx"), cert.Export(X509ContentType.Pfx, "pw"));
        }
        string model = TinyAgentModel.Write(dir.Path);
        string path = TinyAgentModel.WriteConfig(dir.Path, model, listen: "https://127.0.0.1:0");
        File.WriteAllText(path, File.ReadAllText(path).Replace("log_level = \"Warning\"", "log_level = \"Warning\"\ncertificate = \"agent.pfx\"\ncertificate_password = \"pw\""));
        var app = AgentApp.Build(AgentConfig.Load(path));
        await app.StartAsync();
        try
        {
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
            Assert.Equal("https", address.Scheme);
            using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, c, _, _) => c?.Subject == "CN=127.0.0.1" };
            using var client = new HttpClient(handler) { BaseAddress = address };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TinyAgentModel.Token);
            await AgentFixture.WaitReady(client);
            var (status, _) = await client.PostJson("/v1/completions", new { model = "tiny", prompt = "hi", max_tokens = 1 });
            Assert.Equal(200, status);
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    [Fact]
    public void Https_without_a_certificate_is_refused()
    {
        using var dir = new TempDir();
        string path = TinyAgentModel.WriteConfig(dir.Path, "m.gguf", listen: "https://127.0.0.1:8443");
        var e = Assert.Throws<AgentConfigException>(() => AgentConfig.Load(path, checkFiles: false));
        Assert.Contains("server.listen: an https:// URL needs server.certificate", e.Message, StringComparison.Ordinal);
    }
}
