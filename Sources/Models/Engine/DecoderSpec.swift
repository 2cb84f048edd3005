import Basics
import CheckpointIO

/// Everything the forward pass needs to know about a decoder, resolved from a config
/// (HF `config.json` or GGUF metadata) by the model's architecture file. The forward
/// code reads only this, never a config or a file name.
public struct DecoderSpec: Sendable, Equatable {
    /// The MLP's nonlinearity: gated (act(gate) · up) for silu and gelu_tanh, ungated
    /// (act(up)) for squared ReLU (nemotron).
    public enum Activation: String, Sendable { case silu, geluTanh = "gelu_tanh", reluSquared = "relu2" }
    /// RMSNorm (x / rms(x) · w), or LayerNorm with a bias ((x − mean) / std · w + b; nemotron).
    public enum Norm: String, Sendable { case rms, layer }

    public var architecture: String
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ffn: Int
    public var vocab: Int
    public var contextLength: Int
    public var normEps: Float
    public var activation: Activation = .silu
    public var norm: Norm = .rms
    /// The MLP has a gate projection (every family but nemotron's squared-ReLU MLP).
    public var gatedMLP: Bool { activation != .reluSquared }

    /// Rotary dimensions per head, and whether pairs are (i, i + n/2) (NeoX / HF) or (2i, 2i+1).
    public var ropeDims: Int
    public var ropeNeox: Bool
    /// Inverse frequencies for global-attention layers and for sliding-window layers
    /// (they differ in gemma3), `ropeDims / 2` each, scaling already applied.
    public var ropeInvFreq: [Double]
    public var ropeInvFreqLocal: [Double]
    /// What cos and sin are multiplied by, for global and for sliding-window layers (YaRN's
    /// attention factor; 1 otherwise).
    public var ropeAttentionFactor: Float = 1
    public var ropeAttentionFactorLocal: Float = 1

    /// Sliding-window length (0: none) and which layers use it.
    public var slidingWindow: Int = 0
    public var slidingLayers: Set<Int> = []

    /// Score scale (1/sqrt(head_dim) unless the architecture says otherwise).
    public var attentionScale: Float
    /// tanh soft-capping of attention scores and of final logits (0: none; gemma2).
    public var attentionSoftcap: Float = 0
    public var finalSoftcap: Float = 0
    /// Multiplies the embedding rows (gemma: sqrt(hidden)).
    public var embeddingScale: Float = 1
    /// Per-head RMSNorm of q and k before RoPE (qwen3, gemma3).
    public var qkNorm = false
    /// Norms after attention and after the MLP, before the residual add (gemma2, gemma3).
    public var postNorms = false
    /// Added to every norm weight read from HF safetensors (gemma stores w, computes x·(1+w);
    /// llama.cpp's GGUF already holds 1+w).
    public var hfNormOffset: Float = 0

    /// Mixture of experts: experts per layer (0: a dense MLP), how many each token is
    /// routed to, whether their softmax weights are renormalised over those (Mixtral,
    /// Qwen3-MoE; not Qwen2-MoE), and the shared expert's width (0: none; qwen2moe).
    /// `ffn` is then each expert's width.
    public var experts = 0
    public var expertsUsed = 0
    public var expertWeightsNorm = true
    public var sharedFFN = 0
    public var isMixtureOfExperts: Bool { experts > 0 }

    public var qDim: Int { heads * headDim }
    public var kvDim: Int { kvHeads * headDim }
}

/// RoPE inverse frequencies: base^(-2i/dims), then the config's scaling.
enum RotaryFrequencies {
    static func base(_ theta: Double, dims: Int) -> [Double] {
        (0..<(dims / 2)).map { i in 1.0 / pow(theta, Double(2 * i) / Double(dims)) }
    }

    /// Applies `rope_scaling` (linear, llama3; "none"/"default" leave them) or a GGUF
    /// `rope_freqs` factor vector. Returns nil for a scaling kind the engine lacks.
    static func scaled(_ f: [Double], scaling: ModelConfig.RopeScaling?, factors: [Float]?) -> [Double]? {
        var out = f
        if let factors {
            guard factors.count == f.count else { return nil }
            for i in out.indices { out[i] /= Double(factors[i]) }
            return out
        }
        guard let s = scaling, let kind = s.kind, kind != "none", kind != "default" else { return out }
        switch kind {
        case "linear":
            let factor = s.factor ?? 1
            return out.map { $0 / factor }
        case "longrope", "su":
            // Within the original context (the engine's context for these models): the short factors.
            guard let f = s.shortFactor, f.count == out.count, f.allSatisfy({ $0.isFinite && $0 > 0 }) else { return nil }
            for i in out.indices { out[i] /= f[i] }
            return out
        case "llama3":
            // Meta's Llama 3.1 scheme, as transformers' _compute_llama3_parameters.
            let factor = s.factor ?? 8, low = s.lowFreqFactor ?? 1, high = s.highFreqFactor ?? 4
            let old = Double(s.originalMaxPositionEmbeddings ?? 8192)
            let lowWavelen = old / low, highWavelen = old / high
            return out.map { inv in
                let wavelen = 2 * Double.pi / inv
                if wavelen < highWavelen { return inv }
                if wavelen > lowWavelen { return inv / factor }
                let smooth = (old / wavelen - low) / (high - low)
                return (1 - smooth) * inv / factor + smooth * inv
            }
        default:
            return nil
        }
    }

    /// LongRoPE's attention factor (transformers' and llama.cpp's converter's):
    /// √(1 + ln(scale) / ln(original)) for a context extended `scale` times, else 1.
    static func longropeAttentionFactor(context: Int?, original: Int?) -> Double {
        guard let context, let original, original > 1 else { return 1 }
        let scale = Double(context) / Double(original)
        return scale > 1 ? (1 + log(scale) / log(Double(original))).squareRoot() : 1
    }

    /// YaRN's default attention factor for a context extended `factor` times.
    static func yarnMscale(_ factor: Double, _ mscale: Double = 1) -> Double { factor <= 1 ? 1 : 0.1 * mscale * log(factor) + 1 }

    /// The factor YaRN multiplies cos and sin by: the config's, the mscale ratio, or the default.
    static func yarnAttentionFactor(_ s: ModelConfig.RopeScaling) -> Double? {
        if let a = s.attentionFactor { return a }
        let factor = s.factor ?? 1
        if let m = s.mscale, let all = s.mscaleAllDim, m != 0, all != 0 { return yarnMscale(factor, m) / yarnMscale(factor, all) }
        return yarnMscale(factor)
    }

    /// YaRN (as transformers' _compute_yarn_parameters and llama.cpp's rope_yarn): each
    /// frequency blends its interpolated (÷ factor) and original values by a linear ramp
    /// over the dimensions between the corrections for `betaFast` and `betaSlow` rotations
    /// in the original context. Returns the frequencies and the attention factor.
    static func yarn(theta: Double, dims: Int, scaling s: ModelConfig.RopeScaling, contextLength: Int?) -> (inv: [Double], attention: Double)? {
        guard let original = s.originalMaxPositionEmbeddings ?? contextLength, original > 0 else { return nil }
        let factor = s.factor ?? Double(contextLength ?? original) / Double(original)
        let betaFast = s.betaFast ?? 32, betaSlow = s.betaSlow ?? 1
        func correction(_ rotations: Double) -> Double {
            Double(dims) * log(Double(original) / (rotations * 2 * Double.pi)) / (2 * log(theta))
        }
        var low = correction(betaFast), high = correction(betaSlow)
        if s.truncate ?? true { low = low.rounded(.down); high = high.rounded(.up) }
        low = max(low, 0); high = min(high, Double(dims - 1))
        if low == high { high += 0.001 }
        let base = Self.base(theta, dims: dims)
        let inv = base.enumerated().map { i, extrapolated -> Double in
            let ramp = min(max((Double(i) - low) / (high - low), 0), 1)
            let keep = 1 - ramp  // share of the original frequency
            return extrapolated / factor * (1 - keep) + extrapolated * keep
        }
        var withFactor = s
        withFactor.factor = factor
        return (inv, yarnAttentionFactor(withFactor) ?? 1)
    }
}

#if canImport(Glibc)
import Glibc
#endif
