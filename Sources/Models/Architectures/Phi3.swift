import Basics
import CheckpointIO

extension Architecture {
    /// Phi-3, Phi-3.5 and Phi-4-mini (`phi3`): LLaMA's block with Q, K and V in one
    /// projection (`qkv_proj` / `attn_qkv`) and gate and up in one (`gate_up_proj`, GGUF
    /// `ffn_up` of twice the FFN width), LongRoPE (short factors within the original
    /// context; GGUF keeps them as `rope_factors_short.weight`), partial rotary (Phi-4-mini),
    /// NeoX pairs unpermuted in GGUF. The engine reads the fused matrices as row slices.
    public static let phi3 = Architecture(
        ggufName: "phi3", hfModelType: "phi3", hfClass: "Phi3ForCausalLM", permutesQK: false,
        layerNames: Phi3.names, readSpec: Phi3.spec, layerLayout: Phi3.layout)
}

enum Phi3 {
    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var s = try DecoderSpec.common(config, architecture: "phi3", format: format, ropeFactors: ropeFactors, path: path)
        if let kind = config.ropeScaling?.kind, kind == "longrope" || kind == "su" {
            // Only the short factors are applied: a longer sequence is refused rather than
            // run with the wrong frequencies.
            let original = config.originalMaxPositionEmbeddings ?? config.ropeScaling?.originalMaxPositionEmbeddings
            s.contextLength = min(s.contextLength, original ?? s.contextLength)
        }
        // transformers slides every layer's window when the config has one (Phi-3-mini: 2047);
        // llama.cpp currently ignores it, which matters only past the window.
        if let w = config.slidingWindow, w > 0 {
            s.slidingWindow = w
            s.slidingLayers = Set(0..<s.layers)
        }
        return s
    }

    @Sendable static func layout(_ s: DecoderSpec) -> [LayerSlot] {
        [
            LayerSlot(.attnNorm, [s.hidden]),
            LayerSlot(.attnQKV, [s.qDim + 2 * s.kvDim, s.hidden]),
            LayerSlot(.attnOutput, [s.hidden, s.qDim]),
            LayerSlot(.mlpNorm, [s.hidden]),
            LayerSlot(.mlpGateUp, [2 * s.ffn, s.hidden]),
            LayerSlot(.mlpDown, [s.hidden, s.ffn]),
        ]
    }

    static let names: [LayerTensor: (gguf: String, hf: String)] = [
        .attnNorm: ("attn_norm.weight", "input_layernorm.weight"),
        .attnQKV: ("attn_qkv.weight", "self_attn.qkv_proj.weight"),
        .attnOutput: ("attn_output.weight", "self_attn.o_proj.weight"),
        .mlpNorm: ("ffn_norm.weight", "post_attention_layernorm.weight"),
        .mlpGateUp: ("ffn_up.weight", "mlp.gate_up_proj.weight"),
        .mlpDown: ("ffn_down.weight", "mlp.down_proj.weight"),
    ]
}
