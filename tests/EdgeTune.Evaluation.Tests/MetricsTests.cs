using EdgeTune.Core;
using EdgeTune.Evaluation.Metrics;
using System.Text.Json.Nodes;

namespace EdgeTune.Evaluation.Tests;

public class MetricsTests
{
    private static readonly NormaliseOptions IgnoreCase = new() { IgnoreCase = true };
    private static readonly NormaliseOptions JsonForm = new() { JsonCanonical = true };

    [Theory]
    [InlineData(" Hello  World ", "Hello World", true)]
    [InlineData("Hello\tWorld\n", "Hello World", true)]
    [InlineData("hello world", "Hello World", false)]
    [InlineData("", "", true)]
    [InlineData("", "x", false)]
    [InlineData("   ", "", true)]
    [InlineData("caf\u00e9", "cafe\u0301", false)] // composed and decomposed é: code points differ (no NFC under invariant globalization)
    [InlineData("日本語", "日本語 ", true)]
    public void ExactMatchWithDefaultNormalisation(string prediction, string reference, bool expected) =>
        Assert.Equal(expected, TextMetrics.ExactMatch(prediction, reference, NormaliseOptions.Default));

    [Fact]
    public void ExactMatchOptions()
    {
        Assert.True(TextMetrics.ExactMatch("hello WORLD", "Hello world", IgnoreCase));
        Assert.True(TextMetrics.ExactMatch("ÄRGER", "ärger", IgnoreCase));
        Assert.False(TextMetrics.ExactMatch(" a", "a", NormaliseOptions.None));
        Assert.False(TextMetrics.ExactMatch("a  b", "a b", NormaliseOptions.None));
        Assert.True(TextMetrics.ExactMatch("a  b", "a b", new NormaliseOptions { Trim = false, CollapseWhitespace = true }));
    }

    [Fact]
    public void JsonWithKeysInAnotherOrderMatchesInCanonicalForm()
    {
        const string a = "{\"b\": 1, \"a\": [1, 2], \"c\": {\"y\": \"é\", \"x\": null}}";
        const string b = "{\"c\":{\"x\":null,\"y\":\"é\"},\"a\":[1,2],\"b\":1.0}";
        Assert.True(TextMetrics.ExactMatch(a, b, JsonForm));
        Assert.False(TextMetrics.ExactMatch(a, b, NormaliseOptions.Default));
        Assert.False(TextMetrics.ExactMatch("{\"a\":[2,1]}", "{\"a\":[1,2]}", JsonForm)); // arrays keep their order
        Assert.True(TextMetrics.ExactMatch("not json ", "not json", JsonForm)); // falls back to text normalisation
    }

    [Fact]
    public void TokenF1AsSquadComputesIt()
    {
        Assert.Equal(1.0, TextMetrics.TokenF1("The cat sat on the mat.", "a cat sat on a mat"));
        // pred {cat, cat, dog}, ref {cat, dog, dog, fish}: common 2, P = 2/3, R = 1/2, F1 = 4/7.
        Assert.Equal(4.0 / 7, TextMetrics.TokenF1("cat cat dog", "cat dog dog fish"), 12);
        Assert.Equal(1.0, TextMetrics.TokenF1("", ""));
        Assert.Equal(0.0, TextMetrics.TokenF1("", "cat"));
        Assert.Equal(0.0, TextMetrics.TokenF1("cat", ""));
        Assert.Equal(1.0, TextMetrics.TokenF1("the", "a")); // both empty after removing articles, as SQuAD's script
        Assert.Equal(0.0, TextMetrics.TokenF1("dog", "cat"));
        Assert.Equal(1.0, TextMetrics.TokenF1("Größe, ÜBER!", "größe über"));
    }

    [Fact]
    public void RougeLIsTheLcsFMeasure()
    {
        // LCS("the cat was found under the bed", "the cat was under the bed") = 6; P = 6/7, R = 1, F = 12/13.
        Assert.Equal(12.0 / 13, TextMetrics.RougeL("the cat was found under the bed", "the cat was under the bed"), 12);
        // LCS("a b c d", "b d a") = 2 (b d); P = 2/4, R = 2/3, F = 2·(1/2·2/3)/(1/2+2/3) = 4/7.
        Assert.Equal(4.0 / 7, TextMetrics.RougeL("a b c d", "b d a"), 12);
        Assert.Equal(1.0, TextMetrics.RougeL("", ""));
        Assert.Equal(0.0, TextMetrics.RougeL("", "x"));
        Assert.Equal(1.0, TextMetrics.RougeL("Straße über", "straße, über."));
        Assert.Equal(0.5, TextMetrics.RougeL("東京 大阪", "東京 京都"), 12);
    }

    [Fact]
    public void MacroF1AndConfusionMatrixByHand()
    {
        string[] gold = ["a", "a", "b", "b", "c"];
        string[] pred = ["a", "b", "b", "b", "a"];
        // a: tp 1, fp 1, fn 1 → 0.5; b: tp 2, fp 1, fn 0 → 0.8; c: tp 0 → 0. Mean 1.3/3.
        Assert.Equal(1.3 / 3, LabelMetrics.MacroF1(pred, gold), 12);
        var m = LabelMetrics.Confusion(pred, gold);
        Assert.Equal(["a", "b", "c"], m.Labels);
        Assert.Equal([[1, 1, 0], [0, 2, 0], [1, 0, 0]], m.Rows);
        Assert.Equal(1.0, LabelMetrics.MacroF1(gold, gold));
        // A predicted label outside the gold set counts in the mean (scikit-learn's label set): x has F1 0.
        Assert.Equal((1 + 2.0 / 3 + 0) / 3, LabelMetrics.MacroF1(["a", "b", "x"], ["a", "b", "b"]), 12);
    }

    [Fact]
    public void LabelsComeFromAJsonFieldOrTheWholeAnswer()
    {
        Assert.Equal("spam", LabelMetrics.LabelOf("{\"reason\": \"x\", \"label\": \"Spam \"}", "label", IgnoreCase));
        Assert.Equal("", LabelMetrics.LabelOf("Spam", "label", IgnoreCase)); // not JSON: no label
        Assert.Equal("3", LabelMetrics.LabelOf("{\"label\": 3}", "label", IgnoreCase));
        Assert.Equal("spam", LabelMetrics.LabelOf("  SPAM\n", null, IgnoreCase));
    }

    [Fact]
    public void JsonValidity()
    {
        Assert.True(Json.IsValid("{\"a\": 1}"));
        Assert.True(Json.IsValid(" [1, 2] \n"));
        Assert.True(Json.IsValid("\"x\""));
        Assert.False(Json.IsValid(""));
        Assert.False(Json.IsValid("{\"a\": 1,}"));
        Assert.False(Json.IsValid("{\"a\": 1} trailing"));
        Assert.False(Json.IsValid("```json\n{}\n```"));
    }

    private static readonly JsonSchemaSubset Person = JsonSchemaSubset.Parse(JsonNode.Parse("""
        { "type": "object", "required": ["name", "age"], "additionalProperties": false,
          "properties": { "name": {"type": "string"}, "age": {"type": "integer"}, "kind": {"enum": ["a", "b"]},
                          "tags": {"type": "array", "items": {"type": "string"}}, "note": {"type": ["string", "null"]} } }
        """));

    [Theory]
    [InlineData("{\"age\": 3, \"name\": \"Zoë\"}", true)]
    [InlineData("{\"name\": \"x\", \"age\": 3.0, \"kind\": \"b\", \"tags\": [\"t\"], \"note\": null}", true)]
    [InlineData("{\"name\": \"x\"}", false)]                       // required age missing
    [InlineData("{\"name\": 1, \"age\": 2}", false)]               // wrong type
    [InlineData("{\"name\": \"x\", \"age\": 2.5}", false)]         // not an integer
    [InlineData("{\"name\": \"x\", \"age\": 2, \"kind\": \"c\"}", false)] // not in the enum
    [InlineData("{\"name\": \"x\", \"age\": 2, \"tags\": [1]}", false)]  // item type
    [InlineData("{\"name\": \"x\", \"age\": 2, \"extra\": 1}", false)]   // additionalProperties false
    [InlineData("[]", false)]
    [InlineData("not json", false)]
    [InlineData("", false)]
    public void SchemaSubset(string answer, bool valid) => Assert.Equal(valid, Person.IsValid(answer));

    [Fact]
    public void SchemaKeywordsOutsideTheSubsetAreRefused()
    {
        var e = Assert.Throws<EdgeTuneException>(() => JsonSchemaSubset.Parse(JsonNode.Parse("{\"type\":\"object\",\"properties\":{\"a\":{\"pattern\":\"x\"}}}")));
        Assert.Contains("pattern", e.Message);
        Assert.Contains("$.properties.a", e.Message);
        Assert.Contains("missing", Person.Validate("{\"name\":\"x\"}")[0]);
    }

    [Fact]
    public void PerFieldAccuracy()
    {
        var f = FieldMetrics.Fields("{\"b\": \"x \", \"a\": 1.0, \"c\": [2]}", "{\"a\": 1, \"b\": \"X\", \"c\": [1]}", IgnoreCase);
        Assert.Equal([("a", true), ("b", true), ("c", false)], f);
        Assert.All(FieldMetrics.Fields("nope", "{\"a\": 1, \"b\": 2}", IgnoreCase), x => Assert.False(x.Correct));
        Assert.Empty(FieldMetrics.Fields("{}", "plain text", IgnoreCase));
    }
}
