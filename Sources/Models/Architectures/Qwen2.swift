import Basics
import CheckpointIO

extension Architecture {
    /// Qwen2 / Qwen2.5: LLaMA with biases on Q, K and V and NeoX RoPE in both formats.
    /// HF's Qwen2 configs carry sliding_window but use it only with use_sliding_window,
    /// which llama.cpp ignores too: full attention, so the spec is the common one.
    public static let qwen2 = Architecture(
        ggufName: "qwen2", hfModelType: "qwen2", hfClass: "Qwen2ForCausalLM", permutesQK: false, layerNames: Llama.names,
        readSpec: { try DecoderSpec.common($0, architecture: "qwen2", format: $1, ropeFactors: $2, path: $3) },
        layerLayout: Llama.layout)
}
