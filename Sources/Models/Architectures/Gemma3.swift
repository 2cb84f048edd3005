import Basics
import CheckpointIO

extension Architecture {
    /// Gemma 3 (text): Gemma 2's block with RMSNorm of q and k per head instead of score
    /// capping; five sliding-window layers for each global one; the sliding layers use RoPE
    /// base 10000 without scaling, the global ones the config's base and scaling. llama.cpp
    /// fixes the 10000 and the 5:1 pattern in code (llama-model.cpp), not in GGUF metadata.
    /// The text model of a multimodal checkpoint (`gemma3`) is read too (MultimodalNames).
    public static let gemma3 = Architecture(
        ggufName: "gemma3", hfModelType: "gemma3_text", hfModelTypeAliases: ["gemma3"], hfClass: "Gemma3ForCausalLM",
        permutesQK: false, normOffset: 1, hfActivation: ("hidden_activation", "gelu_pytorch_tanh"), hfStatesQueryScale: true, alwaysTiedEmbeddings: true, ggufSlidingPattern: true, layerNames: Gemma.names, readSpec: Gemma3.spec,
        layerLayout: { Llama.withQKNorm(Gemma.layout($0), $0) })
}

enum Gemma3 {
    static let localRopeBase = 10000.0
    static let defaultPattern = 6

    @Sendable static func spec(_ config: ModelConfig, format: CheckpointFormat, ropeFactors: [Float]?, path: String) throws -> DecoderSpec {
        var c = config
        if c.ropeTheta == nil { c.ropeTheta = 1_000_000 }
        var s = try DecoderSpec.common(c, architecture: "gemma3", format: format, ropeFactors: ropeFactors, path: path)
        s.activation = .geluTanh
        s.postNorms = true
        s.qkNorm = true
        s.hfNormOffset = 1
        s.embeddingScale = Float(s.hidden).squareRoot()
        s.ropeInvFreqLocal = RotaryFrequencies.base(config.ropeLocalBaseFreq ?? localRopeBase, dims: s.ropeDims)
        s.ropeAttentionFactorLocal = 1
        s.slidingWindow = config.slidingWindow ?? 4096
        let pattern = max(config.slidingWindowPattern ?? defaultPattern, 1)
        s.slidingLayers = Set((0..<s.layers).filter { ($0 + 1) % pattern != 0 })
        if let types = config.layerTypes, types.count == s.layers {
            s.slidingLayers = Set(types.indices.filter { types[$0] == "sliding_attention" })
        }
        s.attentionScale = Gemma.attentionScale(config, spec: s, twentySevenBLayers: 62)
        return s
    }
}
