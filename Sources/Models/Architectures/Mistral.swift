import Basics
import CheckpointIO

extension Architecture {
    /// Mistral (and Mistral-NeMo): LLaMA with an optional sliding window on every layer.
    /// llama.cpp has no `mistral` architecture: its converter writes Mistral as `llama`,
    /// whose name map and Q/K order it shares. A `mistral` GGUF is still read.
    public static let mistral = Architecture(
        ggufName: "mistral", hfModelType: "mistral", hfClass: "MistralForCausalLM", ggufWrittenAs: "llama", permutesQK: true,
        layerNames: Llama.names, readSpec: Mistral.spec, layerLayout: Llama.layout)
}

enum Mistral {
    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var s = try DecoderSpec.common(config, architecture: "mistral", format: format, ropeFactors: ropeFactors, path: path)
        if let w = config.slidingWindow, w > 0 {
            s.slidingWindow = w
            s.slidingLayers = Set(0..<s.layers)
        }
        return s
    }
}
