namespace EdgeTune.Retrieval.Tests;

public class ExampleIndexTests
{
    [Fact]
    public void Search_ranks_the_most_similar_examples_first_and_returns_only_what_was_indexed()
    {
        using var index = new ExampleIndex([("a", "my RouterX will not power on"), ("b", "refund for the CamPro has not arrived"), ("c", "the RouterX app crashes")]);
        Assert.Equal(["a", "c"], index.Search("RouterX does not power on at all", 2));
        Assert.Equal(["b"], index.Search("where is my CamPro refund?", 1));
        Assert.Empty(index.Search("!!!", 3));
        Assert.Empty(index.Search("zebra", 3));
        // Query text is never FTS syntax.
        Assert.Equal(["a"], index.Search("power\" OR NEAR(x) AND *", 1));
    }
}
