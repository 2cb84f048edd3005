import Basics
import CheckpointIO

/// Range checks on a model's hyper-parameters, run before anything is allocated, sized
/// or narrowed from them (as mlx's `validateModelConfiguration`). A `config.json` or GGUF
/// header is user input: a value out of range is an error naming the key, never a trap.
struct ConfigCheck {
    let path: String
    let format: CheckpointFormat
    let architecture: String

    // Bounds far above any released model, low enough that products of two of them stay
    // far inside Int and each fits the kernels' Int32 arguments.
    static let maxLayers = 1 << 12
    static let maxWidth = 1 << 20
    static let maxHeads = 1 << 12
    static let maxHeadDim = 1 << 12
    static let maxVocab = 1 << 24

    /// The key as the file spells it: HF `config.json` name or GGUF `{arch}.` key.
    func key(_ hf: String, _ gguf: String) -> String {
        format == .gguf ? (gguf == "vocab_size" ? "\(architecture).vocab_size" : "\(architecture).\(gguf)") : hf
    }

    /// A size: present, at least 1, at most `max`.
    func count(_ value: Int?, _ hf: String, _ gguf: String, max: Int) throws -> Int {
        guard let value else {
            throw CheckpointError.badMetadata(path: path, key: key(hf, gguf), reason: "missing; the engine needs it")
        }
        guard value >= 1, value <= max else {
            throw CheckpointError.badMetadata(path: path, key: key(hf, gguf), reason: "\(value) is out of range (1…\(max))")
        }
        return value
    }

    /// A real number: finite and inside `range`.
    @discardableResult
    func real(_ value: Double, _ hf: String, _ gguf: String, in range: ClosedRange<Double>) throws -> Double {
        guard value.isFinite, range.contains(value) else {
            throw CheckpointError.badMetadata(path: path, key: key(hf, gguf), reason: "\(value) is out of range (\(range.lowerBound)…\(range.upperBound))")
        }
        return value
    }

    /// A count that may be absent or zero (a window, a period), but not negative.
    func optionalCount(_ value: Int?, _ hf: String, _ gguf: String) throws {
        if let value, value < 0 {
            throw CheckpointError.badMetadata(path: path, key: key(hf, gguf), reason: "\(value) is negative")
        }
    }

    /// `rope_scaling`: every factor finite and positive, the llama3 band ordered.
    func ropeScaling(_ s: ModelConfig.RopeScaling) throws {
        let k = key("rope_scaling", "rope.scaling")
        func positive(_ v: Double?, _ field: String) throws {
            if let v, !(v.isFinite && v > 0 && v < 1e9) {
                throw CheckpointError.badMetadata(path: path, key: k, reason: "\(field) is \(v); it must be a positive finite number")
            }
        }
        try positive(s.factor, "factor")
        try positive(s.lowFreqFactor, "low_freq_factor")
        try positive(s.highFreqFactor, "high_freq_factor")
        try positive(s.betaFast, "beta_fast")
        try positive(s.betaSlow, "beta_slow")
        try positive(s.attentionFactor, "attention_factor")
        try positive(s.mscale, "mscale")
        try positive(s.mscaleAllDim, "mscale_all_dim")
        if let o = s.originalMaxPositionEmbeddings, o < 1 || o > Int(Int32.max) {
            throw CheckpointError.badMetadata(path: path, key: k, reason: "original_max_position_embeddings is \(o)")
        }
        if s.kind == "llama3", (s.highFreqFactor ?? 4) <= (s.lowFreqFactor ?? 1) {
            throw CheckpointError.badMetadata(path: path, key: k, reason: "high_freq_factor must exceed low_freq_factor")
        }
    }

    /// The family-specific values of a built spec, and the window narrowed to what the
    /// kernels take: a window longer than any sequence is the same as no window.
    func finish(_ spec: DecoderSpec, config c: ModelConfig) throws -> DecoderSpec {
        var s = spec
        try optionalCount(c.slidingWindow, "sliding_window", "attention.sliding_window")
        try optionalCount(c.slidingWindowPattern, "sliding_window_pattern", "attention.sliding_window_pattern")
        if let v = c.attnLogitSoftcapping { try real(v, "attn_logit_softcapping", "attn_logit_softcapping", in: 0...1e6) }
        if let v = c.finalLogitSoftcapping { try real(v, "final_logit_softcapping", "final_logit_softcapping", in: 0...1e6) }
        if let v = c.queryPreAttnScalar { try real(v, "query_pre_attn_scalar", "query_pre_attn_scalar", in: 0...1e9) }
        if let v = c.ropeLocalBaseFreq { try real(v, "rope_local_base_freq", "rope.freq_base_swa", in: 1.0000001...1e12) }
        s.slidingWindow = min(max(s.slidingWindow, 0), Int(Int32.max))
        guard s.attentionScale.isFinite, s.attentionScale > 0, s.embeddingScale.isFinite,
              s.ropeInvFreq.allSatisfy(\.isFinite), s.ropeInvFreqLocal.allSatisfy(\.isFinite),
              s.ropeAttentionFactor.isFinite, s.ropeAttentionFactorLocal.isFinite
        else {
            throw CheckpointError.badMetadata(path: path, key: key("rope_scaling", "rope.scaling"),
                                              reason: "the RoPE or attention scales come out non-finite")
        }
        return s
    }
}
