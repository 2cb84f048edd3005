import CheckpointIO

/// LLaMA (also SmolLM, TinyLlama, Llama 2/3/3.1): pre-norm RMSNorm blocks, RoPE, grouped
/// KV heads, SiLU-gated MLP. The reference decoder the other families vary.
enum Llama {
    static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        try DecoderSpec.common(config, architecture: "llama", format: format, ropeFactors: ropeFactors, path: path)
    }
}

extension DecoderSpec {
    /// The fields every family reads the same way. Missing sizes are errors naming the key.
    static func common(_ c: ModelConfig, architecture: String, format: CheckpointFormat,
                       ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        func need(_ v: Int?, _ key: String) throws -> Int {
            guard let v, v > 0 else {
                throw CheckpointError.badMetadata(path: path, key: key, reason: "missing or not a positive integer; the engine needs it")
            }
            return v
        }
        let layers = try need(c.numHiddenLayers, format == .gguf ? "\(architecture).block_count" : "num_hidden_layers")
        let hidden = try need(c.hiddenSize, format == .gguf ? "\(architecture).embedding_length" : "hidden_size")
        let heads = try need(c.numAttentionHeads, format == .gguf ? "\(architecture).attention.head_count" : "num_attention_heads")
        let kvHeads = c.numKeyValueHeads ?? heads
        let ffn = try need(c.intermediateSize, format == .gguf ? "\(architecture).feed_forward_length" : "intermediate_size")
        let vocab = try need(c.vocabSize, "vocab_size")
        let headDim = c.headDim ?? hidden / heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw CheckpointError.badMetadata(path: path, key: "num_key_value_heads",
                                              reason: "\(kvHeads) KV heads do not divide \(heads) attention heads")
        }
        let ropeDims = c.ropeDimensionCount ?? headDim
        guard ropeDims > 0, ropeDims % 2 == 0, ropeDims <= headDim else {
            throw CheckpointError.badMetadata(path: path, key: "rope.dimension_count", reason: "\(ropeDims) rotary dims for heads of \(headDim)")
        }
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
        } else {
            throw CheckpointError.unsupported(path: path, reason: "RoPE scaling '\(c.ropeScaling?.kind ?? "?")' is not implemented in the engine (linear, llama3 and yarn are)")
        }
        let arch = Architecture.gguf(architecture)
        return DecoderSpec(
            architecture: architecture, layers: layers, hidden: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim,
            ffn: ffn, vocab: vocab, contextLength: c.maxPositionEmbeddings ?? 2048, normEps: Float(c.rmsNormEps ?? 1e-6),
            // llama.cpp's converter permutes Q/K rows of LLaMA-family models so RoPE can pair
            // adjacent elements; HF files keep the halves layout.
            ropeDims: ropeDims, ropeNeox: !(format == .gguf && (arch?.permutesQK ?? false)),
            ropeInvFreq: inv, ropeInvFreqLocal: inv,
            ropeAttentionFactor: Float(attentionFactor), ropeAttentionFactorLocal: Float(attentionFactor),
            attentionScale: 1 / Float(headDim).squareRoot())
    }
}
