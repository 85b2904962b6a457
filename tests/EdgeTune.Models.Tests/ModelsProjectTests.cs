using EdgeTune.Models.Tokenizers;

namespace EdgeTune.Models.Tests;

public class ModelsProjectTests
{
    [Fact]
    public void Tokenizer_contract_is_public() => Assert.True(typeof(ITokenizer).IsPublic);
}
