namespace EdgeTune.Models.Tests;

/// <summary>Texts every tokenizer must agree on: languages, scripts, emoji, code, whitespace runs, numbers, special tokens.</summary>
internal static class TokenizerCorpus
{
    public static readonly string[] Common =
    [
        "Hello world",
        "hello, World! How's it going? I'm fine; we'd've LOVED it.",
        " leading space",
        "trailing spaces   ",
        "  two leading, tabs\tand\t\ttabs",
        "line one\nline two\r\n\nline four\n\n\n",
        "Ünïcödé façade naïve café Straße",
        "Привет, как дела? Всё хорошо.",
        "Γειά σου Κόσμε",
        "日本語のテキストを分割します。東京は大きい。",
        "我爱自然语言处理，这是一个测试。",
        "한국어 문장도 시험합니다.",
        "مرحبا بالعالم، هذه جملة عربية.",
        "שלום עולם",
        "हिन्दी में एक वाक्य",
        "ภาษาไทยไม่มีช่องว่าง",
        "emoji 😀😃🎉 family 👨‍👩‍👧‍👦 flags 🇩🇪🇯🇵 and 👍🏽",
        "math 𝐀𝐁𝐂 and 𝟙𝟚𝟛, old 𠀀𠀁",
        "numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 2024-06-01",
        "def f(x):\n    return x ** 2  # square\n\nprint(f(10))",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "<html><body class=\"x\">&amp; text</body></html>",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "    indented with four spaces\n\tand a tab",
        "a    b     c      d",
        "!!!???...,,,;;;:::",
        "URL https://example.com/path?q=1&r=2#frag and mail a.b@c.de",
        "mixed日本語English한국어العربية123",
        "'s 't 're 've 'm 'll 'd 'S 'T",
        "",
        " ",
        "\n",
        "x",
    ];

    /// <summary>Texts with a model's special tokens inside (parsed as specials when parseSpecial is on).</summary>
    public static string[] WithSpecials(string name) => name switch
    {
        "llama3" =>
        [
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
            "text<|eot_id|>more text <|eot_id|> end",
            "<|reserved_special_token_5|>x<|end_of_text|>",
        ],
        "qwen3" =>
        [
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
            "text<|im_end|>more <|endoftext|> end",
            "<think>\nreasoning\n</think>\n\nanswer <tool_call>{}</tool_call>",
        ],
        "llama2" =>
        [
            "<s>[INST] Hello [/INST] Hi</s>",
            "text</s>more <s> end",
            "<unk> unknown",
        ],
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    public static string[] All(string name) => [.. Common, .. WithSpecials(name)];
}
