import Basics
import CheckpointIO

extension Architecture {
    /// Qwen2 / Qwen2.5: LLaMA with biases on Q, K and V and NeoX RoPE in both formats.
    public static let qwen2 = Architecture(
        ggufName: "qwen2", hfModelType: "qwen2", hfClass: "Qwen2ForCausalLM", permutesQK: false,
        layerNames: Llama.names, spec: Qwen2.spec, layout: Llama.layout)
}

enum Qwen2 {
    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        // HF's Qwen2 configs carry sliding_window but use it only with use_sliding_window,
        // which llama.cpp ignores too: full attention.
        try DecoderSpec.common(config, architecture: "qwen2", format: format, ropeFactors: ropeFactors, path: path)
    }
}
