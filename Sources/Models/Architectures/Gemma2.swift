import Basics
import CheckpointIO

/// Gemma 2: embeddings scaled by sqrt(hidden), norms after attention and after the MLP as
/// well as before, GELU-tanh gated MLP, tanh soft-capping of attention scores (50) and of
/// final logits (30), sliding-window attention on even layers, global on odd ones.
enum Gemma2 {
    static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var s = try DecoderSpec.common(config, architecture: "gemma2", format: format, ropeFactors: ropeFactors, path: path)
        s.activation = .geluTanh
        s.postNorms = true
        s.hfNormOffset = 1
        s.embeddingScale = Float(s.hidden).squareRoot()
        s.attentionSoftcap = Float(config.attnLogitSoftcapping ?? 50)
        s.finalSoftcap = Float(config.finalLogitSoftcapping ?? 30)
        s.slidingWindow = config.slidingWindow ?? 4096
        // llama.cpp: swa pattern 2 (layer il slides when il % 2 == 0), as HF's is_sliding.
        s.slidingLayers = Set((0..<s.layers).filter { $0 % 2 == 0 })
        if let types = config.layerTypes, types.count == s.layers {
            s.slidingLayers = Set(types.indices.filter { types[$0] == "sliding_attention" })
        }
        s.attentionScale = Gemma.attentionScale(config, spec: s, twentySevenBLayers: 46)
        return s
    }
}

/// What the two Gemma files share.
enum Gemma {
    /// HF's query_pre_attn_scalar when the config has it; otherwise llama.cpp's rule,
    /// which derives the 27B model's value (hidden/heads, not head_dim) from its layer count.
    static func attentionScale(_ c: ModelConfig, spec s: DecoderSpec, twentySevenBLayers: Int) -> Float {
        if let q = c.queryPreAttnScalar, q > 0 { return 1 / Float(q).squareRoot() }
        if s.layers == twentySevenBLayers { return 1 / Float(s.hidden / s.heads).squareRoot() }
        return 1 / Float(s.headDim).squareRoot()
    }
}
