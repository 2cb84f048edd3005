import Basics
import CheckpointIO

extension Architecture {
    /// Gemma 2: embeddings scaled by sqrt(hidden), norms after attention and after the MLP as
    /// well as before, GELU-tanh gated MLP, tanh soft-capping of attention scores (50) and of
    /// final logits (30), sliding-window attention on even layers, global on odd ones.
    public static let gemma2 = Architecture(
        ggufName: "gemma2", hfModelType: "gemma2", hfClass: "Gemma2ForCausalLM", permutesQK: false, normOffset: 1, hfActivation: ("hidden_activation", "gelu_pytorch_tanh"), hfStatesQueryScale: true,
        alwaysTiedEmbeddings: true, ggufSlidingPattern: true, layerNames: Gemma.names, readSpec: Gemma2.spec, layerLayout: Gemma.layout)
}

enum Gemma2 {
    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
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
    /// LLaMA's layer with a norm after attention and one after the MLP.
    @Sendable static func layout(_ s: DecoderSpec) -> [LayerSlot] {
        var out = Llama.layout(s)
        out.insert(LayerSlot(.postAttnNorm, [s.hidden]), at: out.firstIndex { $0.part == .attnOutput }! + 1)
        out.append(LayerSlot(.postMlpNorm, [s.hidden]))
        return out
    }

    // Norms around both blocks: HF's post_attention_layernorm is the norm *after*
    // attention (GGUF post_attention_norm), and the pre-MLP norm has its own name.
    static let names: [LayerTensor: (gguf: String, hf: String)] = {
        var n = Llama.names
        n[.postAttnNorm] = ("post_attention_norm.weight", "post_attention_layernorm.weight")
        n[.mlpNorm] = ("ffn_norm.weight", "pre_feedforward_layernorm.weight")
        n[.postMlpNorm] = ("post_ffw_norm.weight", "post_feedforward_layernorm.weight")
        return n
    }()

    /// HF's query_pre_attn_scalar when the config has it; otherwise llama.cpp's rule,
    /// which derives the 27B model's value (hidden/heads, not head_dim) from its layer count.
    static func attentionScale(_ c: ModelConfig, spec s: DecoderSpec, twentySevenBLayers: Int) -> Float {
        if let q = c.queryPreAttnScalar, q > 0 { return 1 / Float(q).squareRoot() }
        if s.layers == twentySevenBLayers { return 1 / Float(s.hidden / s.heads).squareRoot() }
        return 1 / Float(s.headDim).squareRoot()
    }
}
