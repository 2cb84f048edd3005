import Basics
import CheckpointIO

/// Qwen3: LLaMA with per-head RMSNorm of q and k before RoPE, no biases, and head_dim
/// independent of hidden/heads.
enum Qwen3 {
    static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var s = try DecoderSpec.common(config, architecture: "qwen3", format: format, ropeFactors: ropeFactors, path: path)
        s.qkNorm = true
        return s
    }
}
