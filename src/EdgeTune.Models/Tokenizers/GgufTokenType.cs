namespace EdgeTune.Models.Tokenizers;

/// <summary>tokenizer.ggml.token_type values (llama.h enum llama_token_type; gguf-py TokenType).</summary>
public enum GgufTokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}
