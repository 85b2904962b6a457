namespace EdgeTune.Models.Architectures;

/// <summary>How a tensor's rows change between the Hugging Face and GGUF layouts.</summary>
public enum RowPermutation
{
    None,
    /// <summary>Rows regrouped per head from rotate_half halves to interleaved pairs, over this many heads.</summary>
    PerHead,
}

/// <summary>
/// One weight of the model in both namings. <see cref="Shape"/> is PyTorch order (outermost first, e.g.
/// [out, in]); GGUF stores the reverse. <see cref="PermuteHeads"/> is the head count of the Q/K permutation
/// (0 when the rows are not permuted).
/// </summary>
public sealed record TensorSpec(string HfName, string GgufName, long[] Shape, int PermuteHeads)
{
    public long[] GgufShape => Shape.Reverse().ToArray();
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>The HF ↔ GGUF tensor names of the llama family (llama.cpp's llama-arch.cpp, convert_hf_to_gguf.py's tensor map).</summary>
public static class TensorMap
{
    /// <summary>HF tensors that carry no weights llama.cpp needs (precomputed rope tables in old checkpoints).</summary>
    public static bool IsIgnoredHfTensor(string name) => name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);

    /// <summary>Every weight tensor of <paramref name="c"/>, in the order convert_hf_to_gguf.py writes them.</summary>
    public static IReadOnlyList<TensorSpec> Tensors(ModelConfig c)
    {
        // The HF→GGUF Q/K row permutation exists only for graphs llama.cpp runs with the interleaved rope.
        int qHeads = c.GgufPermutesQk ? c.Heads : 0, kHeads = c.GgufPermutesQk ? c.KvHeads : 0;
        var list = new List<TensorSpec>
        {
            new("model.embed_tokens.weight", "token_embd.weight", [c.VocabSize, c.HiddenSize], 0),
        };
        for (int i = 0; i < c.Layers; i++)
        {
            string hf = $"model.layers.{i}.", gg = $"blk.{i}.";
            list.Add(new(hf + "input_layernorm.weight", gg + "attn_norm.weight", [c.HiddenSize], 0));
            list.Add(new(hf + "self_attn.q_proj.weight", gg + "attn_q.weight", [c.QDim, c.HiddenSize], qHeads));
            if (c.AttentionBias) list.Add(new(hf + "self_attn.q_proj.bias", gg + "attn_q.bias", [c.QDim], qHeads));
            list.Add(new(hf + "self_attn.k_proj.weight", gg + "attn_k.weight", [c.KvDim, c.HiddenSize], kHeads));
            if (c.AttentionBias) list.Add(new(hf + "self_attn.k_proj.bias", gg + "attn_k.bias", [c.KvDim], kHeads));
            list.Add(new(hf + "self_attn.v_proj.weight", gg + "attn_v.weight", [c.KvDim, c.HiddenSize], 0));
            if (c.AttentionBias) list.Add(new(hf + "self_attn.v_proj.bias", gg + "attn_v.bias", [c.KvDim], 0));
            list.Add(new(hf + "self_attn.o_proj.weight", gg + "attn_output.weight", [c.HiddenSize, c.QDim], 0));
            list.Add(new(hf + "post_attention_layernorm.weight", gg + "ffn_norm.weight", [c.HiddenSize], 0));
            list.Add(new(hf + "mlp.gate_proj.weight", gg + "ffn_gate.weight", [c.IntermediateSize, c.HiddenSize], 0));
            list.Add(new(hf + "mlp.up_proj.weight", gg + "ffn_up.weight", [c.IntermediateSize, c.HiddenSize], 0));
            list.Add(new(hf + "mlp.down_proj.weight", gg + "ffn_down.weight", [c.HiddenSize, c.IntermediateSize], 0));
        }
        list.Add(new("model.norm.weight", "output_norm.weight", [c.HiddenSize], 0));
        if (!c.TiedEmbeddings) list.Add(new("lm_head.weight", "output.weight", [c.VocabSize, c.HiddenSize], 0));
        return list;
    }

    /// <summary>
    /// GGUF row of HF row <paramref name="hfRow"/> under convert_hf_to_gguf.py's LlamaModel.permute:
    /// w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2): within a head of D rows, HF row h·D/2 + j
    /// (half h of rotate_half, pair j) becomes row 2j + h (the interleaved pair llama.cpp rotates).
    /// </summary>
    public static int PermutedRow(int hfRow, int rows, int heads)
    {
        int headDim = rows / heads, half = headDim / 2;
        int head = hfRow / headDim, r = hfRow % headDim;
        return head * headDim + (r % half) * 2 + r / half;
    }
}
