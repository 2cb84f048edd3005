import Basics
import CheckpointIO

/// Qwen2 / Qwen2.5: LLaMA with biases on Q, K and V and NeoX RoPE in both formats.
/// (Biases are found by name: their presence is the only switch.)
enum Qwen2 {
    static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        // HF's Qwen2 configs carry sliding_window but use it only with use_sliding_window,
        // which llama.cpp ignores too: full attention.
        try DecoderSpec.common(config, architecture: "qwen2", format: format, ropeFactors: ropeFactors, path: path)
    }
}
