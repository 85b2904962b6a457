namespace EdgeTune.Cli.Tests;

public class DemoCommandTests
{
    [Fact]
    public void Demo_quantises_the_built_in_model_and_reports_llama_cpp_figures()
    {
        var r = CliRunner.Run("demo", "--types", "F16,Q8_0", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n');
        var q8 = lines.Single(l => l.StartsWith("Q8_0", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var f16 = lines.Single(l => l.StartsWith("F16", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // columns: type, size, unit, bits/w, seconds, RMSE, rel. error, %, top-1, %
        // Q8_0 is 8.5 bits per weight; the 1-D norms stay F32, which adds a little.
        Assert.InRange(double.Parse(q8[3], System.Globalization.CultureInfo.InvariantCulture), 8.5, 8.6);
        Assert.Equal("16.00", f16[3]);
        double q8Error = double.Parse(q8[5], System.Globalization.CultureInfo.InvariantCulture);
        double f16Error = double.Parse(f16[5], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(q8Error > f16Error && f16Error > 0, $"Q8_0 error {q8Error} should exceed F16's {f16Error}");
    }

    [Fact]
    public void Demo_refuses_unknown_types_as_usage_errors() =>
        Assert.Equal(2, CliRunner.Run("demo", "--types", "Q9_9").ExitCode);
}
