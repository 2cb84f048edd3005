import Basics
import CheckpointIO

extension Architecture {
    /// Qwen3: LLaMA with per-head RMSNorm of q and k before RoPE, no biases, and head_dim
    /// independent of hidden/heads.
    public static let qwen3 = Architecture(
        ggufName: "qwen3", hfModelType: "qwen3", hfClass: "Qwen3ForCausalLM", permutesQK: false,
        layerNames: Llama.names, readSpec: Qwen3.spec, layerLayout: { Llama.withQKNorm(Llama.layout($0), $0) })
}

enum Qwen3 {
    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var s = try DecoderSpec.common(config, architecture: "qwen3", format: format, ropeFactors: ropeFactors, path: path)
        s.qkNorm = true
        return s
    }
}
