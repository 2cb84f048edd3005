import Basics
import CheckpointIO

extension Architecture {
    /// LLaMA (also SmolLM, TinyLlama, Llama 2/3/3.1): pre-norm RMSNorm blocks, RoPE, grouped
    /// KV heads, SiLU-gated MLP. The reference decoder the other families vary.
    public static let llama = Architecture(
        ggufName: "llama", hfModelType: "llama", hfClass: "LlamaForCausalLM", permutesQK: true,
        layerNames: Llama.names, hfExperts: Architecture.mixtral.hfExperts, readSpec: Llama.spec, layerLayout: Llama.layout)
}

enum Llama {
    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var s = try DecoderSpec.common(config, architecture: "llama", format: format, ropeFactors: ropeFactors, path: path)
        // llama.cpp's Mixtral: a llama GGUF with expert_count.
        try MoE.route(&s, config, format: format, normalises: true, path: path)
        return s
    }

    /// Pre-norm attention (Q, K, V with optional biases, output), then a pre-norm gated MLP
    /// (or its mixture of experts).
    @Sendable static func layout(_ s: DecoderSpec) -> [LayerSlot] {
        MoE.layout(denseLayout(s), s)
    }

    static func denseLayout(_ s: DecoderSpec) -> [LayerSlot] {
        [
            LayerSlot(.attnNorm, [s.hidden]),
            LayerSlot(.attnQ, [s.qDim, s.hidden]), LayerSlot(.attnK, [s.kvDim, s.hidden]), LayerSlot(.attnV, [s.kvDim, s.hidden]),
            // Biases are found by name: their presence is the only switch (qwen2 has them).
            LayerSlot(.attnQBias, [s.qDim], optional: true), LayerSlot(.attnKBias, [s.kvDim], optional: true),
            LayerSlot(.attnVBias, [s.kvDim], optional: true),
            LayerSlot(.attnOutput, [s.hidden, s.qDim]),
            LayerSlot(.mlpNorm, [s.hidden]),
            LayerSlot(.mlpGate, [s.ffn, s.hidden]), LayerSlot(.mlpUp, [s.ffn, s.hidden]), LayerSlot(.mlpDown, [s.hidden, s.ffn]),
        ]
    }

    /// The layout with per-head q and k norms after the projections (qwen3, gemma3).
    static func withQKNorm(_ layout: [LayerSlot], _ s: DecoderSpec) -> [LayerSlot] {
        var out = layout
        let at = out.firstIndex { $0.part == .attnOutput }!
        out.insert(contentsOf: [LayerSlot(.attnQNorm, [s.headDim]), LayerSlot(.attnKNorm, [s.headDim])], at: at)
        return out
    }

    static let names: [LayerTensor: (gguf: String, hf: String)] = denseNames.merging(MoE.names(router: "block_sparse_moe.gate.weight")) { $1 }

    static let denseNames: [LayerTensor: (gguf: String, hf: String)] = [
        .attnNorm: ("attn_norm.weight", "input_layernorm.weight"),
        .attnQ: ("attn_q.weight", "self_attn.q_proj.weight"),
        .attnK: ("attn_k.weight", "self_attn.k_proj.weight"),
        .attnV: ("attn_v.weight", "self_attn.v_proj.weight"),
        .attnOutput: ("attn_output.weight", "self_attn.o_proj.weight"),
        .attnQBias: ("attn_q.bias", "self_attn.q_proj.bias"),
        .attnKBias: ("attn_k.bias", "self_attn.k_proj.bias"),
        .attnVBias: ("attn_v.bias", "self_attn.v_proj.bias"),
        .attnQNorm: ("attn_q_norm.weight", "self_attn.q_norm.weight"),
        .attnKNorm: ("attn_k_norm.weight", "self_attn.k_norm.weight"),
        .mlpNorm: ("ffn_norm.weight", "post_attention_layernorm.weight"),
        .mlpGate: ("ffn_gate.weight", "mlp.gate_proj.weight"),
        .mlpUp: ("ffn_up.weight", "mlp.up_proj.weight"),
        .mlpDown: ("ffn_down.weight", "mlp.down_proj.weight"),
    ]
}

extension DecoderSpec {
    /// The fields every family reads the same way. Missing sizes are errors naming the key.
    static func common(_ c: ModelConfig, architecture: String, format: CheckpointFormat,
                       ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        // Every value is range-checked before anything is sized or narrowed from it: a
        // config is user input, and a trap on it would be a crash, not an error.
        let check = ConfigCheck(path: path, format: format, architecture: architecture)
        let layers = try check.count(c.numHiddenLayers, "num_hidden_layers", "block_count", max: ConfigCheck.maxLayers)
        let hidden = try check.count(c.hiddenSize, "hidden_size", "embedding_length", max: ConfigCheck.maxWidth)
        let heads = try check.count(c.numAttentionHeads, "num_attention_heads", "attention.head_count", max: ConfigCheck.maxHeads)
        let kvHeads = try check.count(c.numKeyValueHeads ?? heads, "num_key_value_heads", "attention.head_count_kv", max: ConfigCheck.maxHeads)
        let ffn = try check.count(c.intermediateSize, "intermediate_size", "feed_forward_length", max: ConfigCheck.maxWidth)
        let vocab = try check.count(c.vocabSize, "vocab_size", "vocab_size", max: ConfigCheck.maxVocab)
        let headDim = try check.count(c.headDim ?? hidden / heads, "head_dim", "attention.key_length", max: ConfigCheck.maxHeadDim)
        guard heads % kvHeads == 0 else {
            throw CheckpointError.badMetadata(path: path, key: check.key("num_key_value_heads", "attention.head_count_kv"),
                                              reason: "\(kvHeads) KV heads do not divide \(heads) attention heads")
        }
        if let f = c.partialRotaryFactor { try check.real(f, "partial_rotary_factor", "rope.dimension_count", in: 0.000001...1) }
        // HF rotates int(head_dim · partial_rotary_factor) dims; GGUF stores the count.
        let partial = c.partialRotaryFactor.map { Int(Double(headDim) * $0) }
        let ropeDims = try check.count(c.ropeDimensionCount ?? partial ?? headDim, partial != nil ? "partial_rotary_factor" : "rope_dimension_count",
                                       "rope.dimension_count", max: headDim)
        guard ropeDims % 2 == 0 else {
            throw CheckpointError.badMetadata(path: path, key: check.key("rope_dimension_count", "rope.dimension_count"),
                                              reason: "\(ropeDims) rotary dims: RoPE rotates pairs, so it must be even")
        }
        let contextLength = try check.count(c.maxPositionEmbeddings ?? 2048, "max_position_embeddings", "context_length", max: Int(Int32.max))
        let normEps = try check.real(c.rmsNormEps ?? 1e-6, "rms_norm_eps", "attention.layer_norm_rms_epsilon", in: 0...1)
        _ = try check.real(c.ropeTheta ?? 10000, "rope_theta", "rope.freq_base", in: 1.0000001...1e12)
        if let s = c.ropeScaling { try check.ropeScaling(s) }
        let theta = c.ropeTheta ?? 10000
        var attentionFactor = 1.0
        let inv: [Double]
        if let s = c.ropeScaling, s.kind == "yarn", ropeFactors == nil {
            guard let y = RotaryFrequencies.yarn(theta: theta, dims: ropeDims, scaling: s, contextLength: c.maxPositionEmbeddings) else {
                throw CheckpointError.badMetadata(path: path, key: "rope_scaling", reason: "YaRN needs original_max_position_embeddings")
            }
            inv = y.inv
            attentionFactor = y.attention
        } else if let scaled = RotaryFrequencies.scaled(RotaryFrequencies.base(theta, dims: ropeDims), scaling: c.ropeScaling, factors: ropeFactors) {
            inv = scaled
            if let s = c.ropeScaling, s.kind == "longrope" || s.kind == "su" {
                attentionFactor = s.attentionFactor ?? RotaryFrequencies.longropeAttentionFactor(
                    context: c.maxPositionEmbeddings, original: c.originalMaxPositionEmbeddings ?? s.originalMaxPositionEmbeddings)
            }
        } else {
            throw CheckpointError.unsupported(path: path, reason: "RoPE scaling '\(c.ropeScaling?.kind ?? "?")' is not implemented in the engine (linear, llama3, yarn and longrope are), or its factors do not match the \(ropeDims) rotary dims")
        }
        let arch = Architecture.gguf(architecture)
        return DecoderSpec(
            architecture: architecture, layers: layers, hidden: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim,
            ffn: ffn, vocab: vocab, contextLength: contextLength, normEps: Float(normEps),
            // llama.cpp's converter permutes Q/K rows of LLaMA-family models so RoPE can pair
            // adjacent elements; HF files keep the halves layout.
            ropeDims: ropeDims, ropeNeox: !(format == .gguf && (arch?.permutesQK ?? false)),
            ropeInvFreq: inv, ropeInvFreqLocal: inv,
            ropeAttentionFactor: Float(attentionFactor), ropeAttentionFactorLocal: Float(attentionFactor),
            attentionScale: 1 / Float(headDim).squareRoot())
    }
}
