import CheckpointIO

/// Everything the forward pass needs to know about a decoder, resolved from a config
/// (HF `config.json` or GGUF metadata) by the model's architecture file. The forward
/// code reads only this, never a config or a file name.
public struct DecoderSpec: Sendable, Equatable {
    public enum Activation: String, Sendable { case silu, geluTanh = "gelu_tanh" }

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

    /// Rotary dimensions per head, and whether pairs are (i, i + n/2) (NeoX / HF) or (2i, 2i+1).
    public var ropeDims: Int
    public var ropeNeox: Bool
    /// Inverse frequencies for global-attention layers and for sliding-window layers
    /// (they differ in gemma3), `ropeDims / 2` each, scaling already applied.
    public var ropeInvFreq: [Double]
    public var ropeInvFreqLocal: [Double]

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
}

#if canImport(Glibc)
import Glibc
#endif
