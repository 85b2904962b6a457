namespace EdgeTune.Export.Licensing;

/// <summary>What the model is shipped for: a product or service (commercial), inside the organisation (internal), or non-commercial research.</summary>
public enum DeclaredUse { Commercial, Internal, Research }

/// <summary>
/// One licence's terms as far as the export gate needs them: what must be done when the model is shipped (obligations,
/// printed and written to the model card) and, per use, the clause that forbids it (null: allowed). Every entry names
/// the text it was read from; the clause wording quotes or closely paraphrases it.
/// </summary>
public sealed record LicenceTerms(
    string Id,
    string Name,
    IReadOnlyList<string> Aliases,
    IReadOnlyList<string> TextMarkers,
    string Source,
    IReadOnlyList<string> Obligations,
    string? RefusesCommercial,
    string? RefusesInternal,
    string? RefusesResearch)
{
    public string? Refuses(DeclaredUse use) => use switch
    {
        DeclaredUse.Commercial => RefusesCommercial,
        DeclaredUse.Internal => RefusesInternal,
        _ => RefusesResearch,
    };
}

/// <summary>
/// The licences EdgeTune knows, by the ids Hugging Face model cards use (<c>license:</c> in the README front matter,
/// copied into GGUF <c>general.license</c> by the converters) and by markers in a LICENSE file's text. "internal" use
/// (a business using the model inside itself) is still use for commercial advantage, so non-commercial licences refuse
/// it too. Qwen's licence depends on the size: Qwen2.5 0.5B, 1.5B, 7B, 14B and 32B are Apache-2.0, 3B is under the Qwen
/// Research licence and 72B under the Qwen licence (2024); Qwen 1 and Qwen2-72B under the older Tongyi Qianwen licence;
/// the model card of each states which (<c>license: other</c> with <c>license_name:</c>).
/// </summary>
public static class LicenceTable
{
    private const string LlamaMau =
        "a product or service with more than 700 million monthly active users (in the month before the model's release) needs a separate licence from Meta (section 2, Additional Commercial Terms)";

    private static LicenceTerms Llama3x(string id, string version, string source, params string[] more) => new(
        id, $"Llama {version} Community License", [$"llama-{version}", $"llama{version}-community"],
        [$"LLAMA {version.ToUpperInvariant()} COMMUNITY LICENSE"], source,
        [
            $"ship a copy of the Llama {version} Community License with the model (section 1.b.i)",
            "display \"Built with Llama\" on a related website, user interface, blog post, about page or product documentation (section 1.b.i)",
            "begin the fine-tuned model's name with \"Llama\" when it is distributed or made available (section 1.b.i)",
            $"keep the notice \"Llama {version} is licensed under the Llama {version} Community License, Copyright © Meta Platforms, Inc. All Rights Reserved.\" in a \"Notice\" text file shipped with the model (section 1.b.iii)",
            "follow Meta's Acceptable Use Policy (section 1.b.iv)",
            LlamaMau,
            .. more,
        ],
        null, null, null);

    private static LicenceTerms CcNc(string id, string name, string source, bool noDerivatives, bool shareAlike = false) => new(
        id, name, [], [$"Attribution-NonCommercial{(noDerivatives ? "-NoDerivatives" : shareAlike ? "-ShareAlike" : "")}"], source,
        noDerivatives
            ? ["give credit to the licensor and link the licence (section 3(a))", "do not share the fine-tuned model: it is Adapted Material, which this licence lets you produce but not Share (section 2(a)(1)(B))"]
            : shareAlike
                ? ["give credit to the licensor, link the licence and say that the model was modified (section 3(a))",
                   "share the fine-tuned model only under CC BY-NC-SA 4.0 or a BY-NC-SA Compatible License, with no extra terms that restrict it (section 3(b))"]
                : ["give credit to the licensor, link the licence and say that the model was modified (section 3(a))"],
        $"section 2(a)(1) grants the rights for NonCommercial purposes only; section 1 defines NonCommercial as \"not primarily intended for or directed towards commercial advantage or monetary compensation\"",
        "section 2(a)(1) grants the rights for NonCommercial purposes only: use inside a business for its work is, on the usual reading, directed towards commercial advantage (section 1, NonCommercial)",
        null);

    public static IReadOnlyList<LicenceTerms> Known { get; } =
    [
        new("apache-2.0", "Apache License 2.0", ["apache 2.0", "apache-2", "apache2", "apache license 2.0"], ["Apache License", "Version 2.0"],
            "https://www.apache.org/licenses/LICENSE-2.0",
            ["give recipients a copy of the licence and keep the NOTICE file if there is one (section 4(a), 4(d))", "mark modified files as changed (section 4(b))",
             "keep the copyright, patent, trademark and attribution notices of the original (section 4(c))"],
            null, null, null),
        new("mit", "MIT License", ["mit license"], ["Permission is hereby granted, free of charge"],
            "https://opensource.org/license/mit",
            ["include the copyright notice and the permission notice with the model"],
            null, null, null),
        new("llama2", "Llama 2 Community License", ["llama-2", "llama2-community"], ["LLAMA 2 COMMUNITY LICENSE"],
            "https://ai.meta.com/llama/license/",
            ["ship a copy of the Llama 2 Community License with the model (section 1.b.i)",
             "keep the notice \"Llama 2 is licensed under the LLAMA 2 Community License, Copyright (c) Meta Platforms, Inc. All Rights Reserved.\" in a \"Notice\" text file shipped with the model (section 1.b.iii)",
             "follow Meta's Acceptable Use Policy (section 1.b.iv)",
             "do not use the model or its outputs to improve any other large language model (excluding Llama 2 and its derivatives) (section 1.b.v)", LlamaMau],
            null, null, null),
        new("llama3", "Meta Llama 3 Community License", ["llama-3", "llama3-community"], ["META LLAMA 3 COMMUNITY LICENSE"],
            "https://www.llama.com/llama3/license/",
            ["ship a copy of the Meta Llama 3 Community License with the model (section 1.b.i)",
             "display \"Built with Meta Llama 3\" on a related website, user interface, blog post, about page or product documentation (section 1.b.i)",
             "begin the fine-tuned model's name with \"Llama 3\" when it is distributed or made available (section 1.b.i)",
             "keep the notice \"Meta Llama 3 is licensed under the Meta Llama 3 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved.\" in a \"Notice\" text file shipped with the model (section 1.b.iii)",
             "follow Meta's Acceptable Use Policy (section 1.b.iv)",
             "do not use the model or its outputs to improve any other large language model (excluding Meta Llama 3 and its derivatives) (section 1.b.v)", LlamaMau],
            null, null, null),
        Llama3x("llama3.1", "3.1", "https://www.llama.com/llama3_1/license/"),
        Llama3x("llama3.2", "3.2", "https://www.llama.com/llama3_2/license/",
            "the Llama 3.2 Acceptable Use Policy does not grant the rights to its multimodal (vision) models to individuals domiciled in, or companies with a principal place of business in, the European Union (text-only models are not affected)"),
        Llama3x("llama3.3", "3.3", "https://www.llama.com/llama3_3/license/"),
        new("gemma", "Gemma Terms of Use", ["gemma-terms"], ["Gemma Terms of Use"],
            "https://ai.google.dev/gemma/terms",
            ["pass the use restrictions of section 3.2 (the Gemma Prohibited Use Policy) on to everyone you give the model to, as an enforceable provision (section 3.1)",
             "give recipients a copy of the Gemma Terms of Use (section 3.1)",
             "mark the modified model as modified (section 3.1)",
             "ship a NOTICE file with \"Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\" (section 3.1)"],
            null, null, null),
        new("qwen", "Qwen License Agreement", ["qwen-license"], ["Qwen LICENSE AGREEMENT"],
            "https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE",
            ["give recipients a copy of the agreement (section 3(a))",
             "mark modified files with a prominent notice that they were changed (section 3(b))",
             "ship a \"Notice\" text file with \"Qwen is licensed under the Qwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All Rights Reserved.\" (section 3(c))",
             "display \"Built with Qwen\" or \"Improved using Qwen\" in the related product documentation of a model fine-tuned from it (section 5(b))",
             "commercial use in a product or service with more than 100 million monthly active users needs a licence from Alibaba Cloud (section 4)"],
            null, null, null),
        new("tongyi-qianwen", "Tongyi Qianwen License Agreement", ["tongyi-qianwen-license-agreement", "tongyi-qianwen-license"], ["Tongyi Qianwen LICENSE AGREEMENT"],
            "https://huggingface.co/Qwen/Qwen-7B/blob/main/LICENSE",
            ["give recipients a copy of the agreement (section 3(a))",
             "mark modified files with a prominent notice that they were changed (section 3(b))",
             "ship a \"Notice\" text file with \"Tongyi Qianwen is licensed under the Tongyi Qianwen LICENSE AGREEMENT, Copyright (c) Alibaba Cloud. All Rights Reserved.\" (section 3(c))",
             "commercial use in a product or service with more than 100 million monthly active users needs a licence from Alibaba Cloud (section 4)",
             "do not use the model or its outputs to improve any other large language model (excluding Tongyi Qianwen and its derivatives) (section 5(b))"],
            null, null, null),
        new("qwen-research", "Qwen Research License Agreement", ["qwen-research-license"], ["Qwen RESEARCH LICENSE AGREEMENT"],
            "https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE",
            ["use it for non-commercial purposes only: research or evaluation (sections 1, 2(a))",
             "give recipients a copy of the agreement, mark modified files and ship the \"Notice\" text file the agreement words (section 3(a)-(c))",
             "display \"Built with Qwen\" or \"Improved using Qwen\" in the related product documentation of a model fine-tuned from it (section 4(b))"],
            "section 2(a) grants the rights for non-commercial purposes only (section 1: research or evaluation); commercial use needs a separate licence from Alibaba Cloud (section 2(b))",
            "section 2(a) grants the rights for non-commercial purposes only (section 1: research or evaluation); use inside a business for its work is commercial use",
            null),
        CcNc("cc-by-nc-4.0", "Creative Commons Attribution-NonCommercial 4.0", "https://creativecommons.org/licenses/by-nc/4.0/legalcode", false),
        CcNc("cc-by-nc-sa-4.0", "Creative Commons Attribution-NonCommercial-ShareAlike 4.0", "https://creativecommons.org/licenses/by-nc-sa/4.0/legalcode", false, shareAlike: true),
        CcNc("cc-by-nc-nd-4.0", "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", "https://creativecommons.org/licenses/by-nc-nd/4.0/legalcode", true),
        new("cc-by-4.0", "Creative Commons Attribution 4.0", [], ["Attribution 4.0 International"],
            "https://creativecommons.org/licenses/by/4.0/legalcode",
            ["give credit to the licensor, link the licence and say that the model was modified (section 3(a))"],
            null, null, null),
    ];

    /// <summary>The entry for a licence id or name as a model card or GGUF states it (case and spacing ignored), or null.</summary>
    public static LicenceTerms? Find(string stated)
    {
        string s = stated.Trim().ToLowerInvariant();
        return Known.FirstOrDefault(t => t.Id == s || t.Aliases.Contains(s) || t.Name.Equals(stated.Trim(), StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>The entry whose markers all appear in a LICENSE file's text, most specific (most markers, longest) first.</summary>
    public static LicenceTerms? FromText(string text) =>
        Known.Where(t => t.TextMarkers.All(m => text.Contains(m, StringComparison.OrdinalIgnoreCase)))
             .OrderByDescending(t => t.TextMarkers.Sum(m => m.Length))
             .FirstOrDefault();
}
