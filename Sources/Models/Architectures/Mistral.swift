import Basics
import CheckpointIO

/// Mistral: LLaMA with an optional sliding window on every layer.
enum Mistral {
    static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var s = try DecoderSpec.common(config, architecture: "mistral", format: format, ropeFactors: ropeFactors, path: path)
        if let w = config.slidingWindow, w > 0 {
            s.slidingWindow = w
            s.slidingLayers = Set(0..<s.layers)
        }
        return s
    }
}
