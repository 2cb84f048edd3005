import Basics
import CheckpointIO

/// The hyper-parameters of a decoder-only transformer, under the names HF
/// `config.json` uses. Decoded from `config.json`, or built from GGUF metadata by
/// `init(gguf:)`, which is the one place GGUF keys are mapped to these fields.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var modelType: String?
    public var architectures: [String]?
    public var numHiddenLayers: Int?
    public var hiddenSize: Int?
    public var intermediateSize: Int?
    public var numAttentionHeads: Int?
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var vocabSize: Int?
    public var maxPositionEmbeddings: Int?
    public var ropeTheta: Double?
    public var rmsNormEps: Double?
    /// LayerNorm epsilon (nemotron's `norm_eps`; GGUF `attention.layer_norm_epsilon`).
    public var normEps: Double?
    /// Share of each head's dimensions RoPE rotates (nemotron, phi3; HF rotates
    /// `int(head_dim · factor)`). GGUF says it as `rope.dimension_count`.
    public var partialRotaryFactor: Double?
    /// phi3: the context its short LongRoPE factors cover (top level in its config.json;
    /// GGUF `rope.scaling.original_context_length`).
    public var originalMaxPositionEmbeddings: Int?
    /// Whether the projections carry biases (HF builds the parameters from these flags,
    /// so a converted model with biases must say so).
    public var attentionBias: Bool?
    public var mlpBias: Bool?
    public var slidingWindow: Int?
    public var tieWordEmbeddings: Bool?
    public var ropeScaling: RopeScaling?
    /// GGUF only: how many dimensions of each head RoPE rotates (`rope.dimension_count`).
    public var ropeDimensionCount: Int?
    /// Gemma: attention scores are scaled by 1/sqrt(this) instead of 1/sqrt(head_dim).
    public var queryPreAttnScalar: Double?
    /// Gemma 2: tanh caps on attention scores and on final logits.
    public var attnLogitSoftcapping: Double?
    public var finalLogitSoftcapping: Double?
    /// Gemma 3: RoPE base of the sliding-window layers, and one global layer in every N.
    public var ropeLocalBaseFreq: Double?
    public var slidingWindowPattern: Int?
    /// `hidden_act` / `hidden_activation` ("silu", "gelu_pytorch_tanh", …).
    public var hiddenAct: String?
    /// Per-layer attention kind in newer HF configs ("sliding_attention" / "full_attention").
    public var layerTypes: [String]?
    /// Mixture of experts: experts per layer (Mixtral `num_local_experts`, Qwen
    /// `num_experts`; GGUF `expert_count`), experts per token, each expert's width where it
    /// differs from `intermediate_size` (Qwen), the shared expert's width (qwen2moe),
    /// whether the chosen experts' weights are renormalised (GGUF `expert_weights_norm`),
    /// and Qwen's placement of sparse layers (every `decoder_sparse_step`-th, less
    /// `mlp_only_layers`), which the engine supports only as every layer.
    public var numLocalExperts: Int?
    public var numExperts: Int?
    public var numExpertsPerTok: Int?
    public var moeIntermediateSize: Int?
    public var sharedExpertIntermediateSize: Int?
    public var normTopkProb: Bool?
    public var decoderSparseStep: Int?
    public var mlpOnlyLayers: [Int]?

    /// Experts per layer, under whichever name the family uses.
    public var expertCount: Int? { numLocalExperts ?? numExperts }

    /// `rope_scaling` in `config.json` (`rope_type` or the older `type`).
    public struct RopeScaling: Codable, Sendable, Equatable {
        public var ropeType: String?
        public var type: String?
        public var factor: Double?
        public var originalMaxPositionEmbeddings: Int?
        /// Llama 3.1's smooth interpolation band.
        public var lowFreqFactor: Double?
        public var highFreqFactor: Double?
        /// YaRN: the ramp's rotation bounds (default 32 and 1), the factor cos and sin are
        /// multiplied by (default 0.1·ln(factor) + 1, or the mscale ratio), and whether the
        /// ramp's ends are rounded to whole dimensions (default true).
        public var betaFast: Double?
        public var betaSlow: Double?
        public var attentionFactor: Double?
        public var mscale: Double?
        public var mscaleAllDim: Double?
        public var truncate: Bool?
        /// LongRoPE (phi3, `longrope` or the older `su`): the divisor of each rotary pair's
        /// frequency within the original context, and beyond it.
        public var shortFactor: [Double]?
        public var longFactor: [Double]?

        enum CodingKeys: String, CodingKey {
            case ropeType = "rope_type", type, factor
            case originalMaxPositionEmbeddings = "original_max_position_embeddings"
            case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
            case betaFast = "beta_fast", betaSlow = "beta_slow", attentionFactor = "attention_factor"
            case mscale, mscaleAllDim = "mscale_all_dim", truncate
            case shortFactor = "short_factor", longFactor = "long_factor"
        }

        public var kind: String? { ropeType ?? type }

        public init() {}

        /// The fields from any keyed container of them (`rope_scaling`, or one entry of
        /// `rope_parameters`).
        init<K: CodingKey>(from e: KeyedDecodingContainer<K>) throws {
            func v<T: Decodable>(_ key: CodingKeys) throws -> T? { try K(stringValue: key.rawValue).flatMap { try e.decodeIfPresent(T.self, forKey: $0) } }
            ropeType = try v(.ropeType); type = try v(.type); factor = try v(.factor)
            originalMaxPositionEmbeddings = try v(.originalMaxPositionEmbeddings)
            lowFreqFactor = try v(.lowFreqFactor); highFreqFactor = try v(.highFreqFactor)
            betaFast = try v(.betaFast); betaSlow = try v(.betaSlow); attentionFactor = try v(.attentionFactor)
            mscale = try v(.mscale); mscaleAllDim = try v(.mscaleAllDim); truncate = try v(.truncate)
            shortFactor = try v(.shortFactor); longFactor = try v(.longFactor)
        }
    }

    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", architectures
        case numHiddenLayers = "num_hidden_layers", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings", ropeTheta = "rope_theta"
        case rmsNormEps = "rms_norm_eps", slidingWindow = "sliding_window"
        case normEps = "norm_eps", partialRotaryFactor = "partial_rotary_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias"
        case tieWordEmbeddings = "tie_word_embeddings", ropeScaling = "rope_scaling"
        case ropeDimensionCount = "rope_dimension_count"
        case queryPreAttnScalar = "query_pre_attn_scalar"
        case attnLogitSoftcapping = "attn_logit_softcapping", finalLogitSoftcapping = "final_logit_softcapping"
        case ropeLocalBaseFreq = "rope_local_base_freq", slidingWindowPattern = "sliding_window_pattern"
        case hiddenAct = "hidden_act", hiddenActivation = "hidden_activation"
        case layerTypes = "layer_types"
        case numLocalExperts = "num_local_experts", numExperts = "num_experts", numExpertsPerTok = "num_experts_per_tok"
        case moeIntermediateSize = "moe_intermediate_size", sharedExpertIntermediateSize = "shared_expert_intermediate_size"
        case normTopkProb = "norm_topk_prob", decoderSparseStep = "decoder_sparse_step", mlpOnlyLayers = "mlp_only_layers"
        case textConfig = "text_config"
        case ropeParameters = "rope_parameters"
    }

    /// A config value this build does not understand and will not guess at.
    struct UnsupportedValue: Error { let reason: String }

    private struct FieldKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The `rope_parameters` fields read (transformers v5 moved `rope_theta` and
    /// `rope_scaling` there). Any other field is refused: a RoPE silently computed
    /// without it would give a model that runs and is wrong.
    static let ropeParameterFields: Set<String> = [
        "rope_theta", "rope_type", "type", "factor", "original_max_position_embeddings", "low_freq_factor",
        "high_freq_factor", "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate",
        "short_factor", "long_factor", "partial_rotary_factor",
    ]

    /// Reads transformers v5's `rope_parameters`: one object of the fields above, or one
    /// per attention kind (`full_attention`, `sliding_attention`: gemma3's local base).
    private mutating func readRopeParameters(_ c: KeyedDecodingContainer<CodingKeys>) throws {
        let outer = try c.nestedContainer(keyedBy: FieldKey.self, forKey: .ropeParameters)
        let kinds = ["full_attention", "sliding_attention"]
        if outer.allKeys.contains(where: { kinds.contains($0.stringValue) }) {
            for key in outer.allKeys {
                guard kinds.contains(key.stringValue) else {
                    throw UnsupportedValue(reason: "rope_parameters has '\(key.stringValue)' beside per-attention-kind entries")
                }
                let (theta, scaling) = try Self.ropeEntry(outer.nestedContainer(keyedBy: FieldKey.self, forKey: key), key.stringValue)
                if key.stringValue == "full_attention" {
                    ropeTheta = theta ?? ropeTheta
                    ropeScaling = scaling
                } else {
                    // The sliding layers of gemma3 take their own base, unscaled.
                    if scaling != nil { throw UnsupportedValue(reason: "rope_parameters.sliding_attention scales RoPE, which the engine does not do for local layers") }
                    ropeLocalBaseFreq = theta ?? ropeLocalBaseFreq
                }
            }
        } else {
            let (theta, scaling) = try Self.ropeEntry(outer, "rope_parameters")
            ropeTheta = theta ?? ropeTheta
            ropeScaling = scaling
            partialRotaryFactor = try outer.decodeIfPresent(Double.self, forKey: FieldKey(stringValue: "partial_rotary_factor")) ?? partialRotaryFactor
            originalMaxPositionEmbeddings = scaling?.originalMaxPositionEmbeddings ?? originalMaxPositionEmbeddings
        }
    }

    private static func ropeEntry(_ e: KeyedDecodingContainer<FieldKey>, _ name: String) throws -> (theta: Double?, scaling: RopeScaling?) {
        let unknown = e.allKeys.map(\.stringValue).filter { !ropeParameterFields.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw UnsupportedValue(reason: "\(name) has \(unknown.map { "'\($0)'" }.joined(separator: ", ")), RoPE fields this build does not read")
        }
        let theta = try e.decodeIfPresent(Double.self, forKey: FieldKey(stringValue: "rope_theta"))
        let scaling = try RopeScaling(from: e)
        let kind = scaling.kind ?? "default"
        return (theta, kind == "default" || kind == "none" ? nil : scaling)
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Multimodal configs (gemma3, …) keep the language model's fields in text_config.
        if !c.contains(.numHiddenLayers), c.contains(.textConfig) {
            var inner = try c.decode(ModelConfig.self, forKey: .textConfig)
            inner.architectures = inner.architectures ?? (try? c.decodeIfPresent([String].self, forKey: .architectures)) ?? nil
            self = inner
            return
        }
        // A field of the wrong type is an error (a silently ignored hidden_size would be worse).
        func opt<T: Decodable>(_ key: CodingKeys) throws -> T? { try c.decodeIfPresent(T.self, forKey: key) }
        modelType = try opt(.modelType)
        architectures = try opt(.architectures)
        numHiddenLayers = try opt(.numHiddenLayers)
        hiddenSize = try opt(.hiddenSize)
        intermediateSize = try opt(.intermediateSize)
        numAttentionHeads = try opt(.numAttentionHeads)
        numKeyValueHeads = try opt(.numKeyValueHeads)
        headDim = try opt(.headDim)
        vocabSize = try opt(.vocabSize)
        maxPositionEmbeddings = try opt(.maxPositionEmbeddings)
        ropeTheta = try opt(.ropeTheta)
        rmsNormEps = try opt(.rmsNormEps)
        normEps = try opt(.normEps)
        partialRotaryFactor = try opt(.partialRotaryFactor)
        originalMaxPositionEmbeddings = try opt(.originalMaxPositionEmbeddings)
        attentionBias = try opt(.attentionBias)
        mlpBias = try opt(.mlpBias)
        slidingWindow = try opt(.slidingWindow)
        tieWordEmbeddings = try opt(.tieWordEmbeddings)
        ropeScaling = try opt(.ropeScaling)
        ropeDimensionCount = try opt(.ropeDimensionCount)
        queryPreAttnScalar = try opt(.queryPreAttnScalar)
        // Capping keys may be present as null (gemma3 configs).
        attnLogitSoftcapping = try? c.decodeIfPresent(Double.self, forKey: .attnLogitSoftcapping)
        finalLogitSoftcapping = try? c.decodeIfPresent(Double.self, forKey: .finalLogitSoftcapping)
        ropeLocalBaseFreq = try opt(.ropeLocalBaseFreq)
        slidingWindowPattern = try opt(.slidingWindowPattern)
        hiddenAct = try opt(.hiddenActivation) ?? opt(.hiddenAct)
        layerTypes = try opt(.layerTypes)
        numLocalExperts = try opt(.numLocalExperts)
        numExperts = try opt(.numExperts)
        numExpertsPerTok = try opt(.numExpertsPerTok)
        moeIntermediateSize = try opt(.moeIntermediateSize)
        sharedExpertIntermediateSize = try opt(.sharedExpertIntermediateSize)
        normTopkProb = try opt(.normTopkProb)
        decoderSparseStep = try opt(.decoderSparseStep)
        mlpOnlyLayers = try opt(.mlpOnlyLayers)
        if c.contains(.ropeParameters) { try readRopeParameters(c) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(modelType, forKey: .modelType)
        try c.encodeIfPresent(architectures, forKey: .architectures)
        try c.encodeIfPresent(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encodeIfPresent(hiddenSize, forKey: .hiddenSize)
        try c.encodeIfPresent(intermediateSize, forKey: .intermediateSize)
        try c.encodeIfPresent(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encodeIfPresent(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encodeIfPresent(headDim, forKey: .headDim)
        try c.encodeIfPresent(vocabSize, forKey: .vocabSize)
        try c.encodeIfPresent(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encodeIfPresent(ropeTheta, forKey: .ropeTheta)
        try c.encodeIfPresent(rmsNormEps, forKey: .rmsNormEps)
        try c.encodeIfPresent(normEps, forKey: .normEps)
        try c.encodeIfPresent(partialRotaryFactor, forKey: .partialRotaryFactor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        try c.encodeIfPresent(attentionBias, forKey: .attentionBias)
        try c.encodeIfPresent(mlpBias, forKey: .mlpBias)
        try c.encodeIfPresent(slidingWindow, forKey: .slidingWindow)
        try c.encodeIfPresent(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encodeIfPresent(ropeScaling, forKey: .ropeScaling)
        try c.encodeIfPresent(ropeDimensionCount, forKey: .ropeDimensionCount)
        try c.encodeIfPresent(queryPreAttnScalar, forKey: .queryPreAttnScalar)
        try c.encodeIfPresent(attnLogitSoftcapping, forKey: .attnLogitSoftcapping)
        try c.encodeIfPresent(finalLogitSoftcapping, forKey: .finalLogitSoftcapping)
        try c.encodeIfPresent(ropeLocalBaseFreq, forKey: .ropeLocalBaseFreq)
        try c.encodeIfPresent(slidingWindowPattern, forKey: .slidingWindowPattern)
        try c.encodeIfPresent(hiddenAct, forKey: .hiddenAct)
        try c.encodeIfPresent(layerTypes, forKey: .layerTypes)
        try c.encodeIfPresent(numLocalExperts, forKey: .numLocalExperts)
        try c.encodeIfPresent(numExperts, forKey: .numExperts)
        try c.encodeIfPresent(numExpertsPerTok, forKey: .numExpertsPerTok)
        try c.encodeIfPresent(moeIntermediateSize, forKey: .moeIntermediateSize)
        try c.encodeIfPresent(sharedExpertIntermediateSize, forKey: .sharedExpertIntermediateSize)
        try c.encodeIfPresent(normTopkProb, forKey: .normTopkProb)
        try c.encodeIfPresent(decoderSparseStep, forKey: .decoderSparseStep)
        try c.encodeIfPresent(mlpOnlyLayers, forKey: .mlpOnlyLayers)
    }

    /// Decodes an HF `config.json`.
    public static func decode(json bytes: [UInt8], path: String) throws -> ModelConfig {
        do {
            return try JSONValueDecoder().decode(ModelConfig.self, from: bytes)
        } catch let e as JSONError {
            throw CheckpointError.malformed(path: path, reason: "invalid JSON: \(e)")
        } catch let e as DecodingError {
            throw CheckpointError.malformed(path: path, reason: "not a usable config.json: \(e.readableDescription)")
        } catch let e as UnsupportedValue {
            throw CheckpointError.unsupported(path: path, reason: e.reason)
        }
    }

    /// Reads the `config.json` beside a safetensors checkpoint, if there is one.
    public static func beside(checkpointPath path: String) throws -> ModelConfig? {
        let dir = try FileSystem.checkpointDirectory(path)
        let p = FileSystem.join(dir, "config.json")
        guard try FileSystem.kind(of: p) == .file else { return nil }
        return try decode(json: FileSystem.readFile(p, limit: 16 << 20), path: p)
    }

    /// Maps GGUF metadata (`{arch}.block_count`, …) to config fields.
    public init(gguf metadata: [MetadataEntry]) {
        let arch = metadata["general.architecture"]?.stringValue ?? ""
        func value(_ key: String) -> MetadataValue? { metadata[arch + "." + key] }
        // Per-layer values (an array, e.g. head counts that vary by layer) are summarised by their maximum.
        func int(_ key: String) -> Int? {
            guard let v = value(key) else { return nil }
            if let i = v.intValue { return i }
            return v.arrayValue?.maxInteger()
        }
        modelType = arch.isEmpty ? nil : arch
        numHiddenLayers = int("block_count")
        hiddenSize = int("embedding_length")
        intermediateSize = int("feed_forward_length")
        numAttentionHeads = int("attention.head_count")
        numKeyValueHeads = int("attention.head_count_kv") ?? numAttentionHeads
        headDim = int("attention.key_length")
        vocabSize = int("vocab_size") ?? metadata["tokenizer.ggml.tokens"]?.arrayValue?.count
        maxPositionEmbeddings = int("context_length")
        ropeTheta = value("rope.freq_base")?.doubleValue
        rmsNormEps = value("attention.layer_norm_rms_epsilon")?.doubleValue
        normEps = value("attention.layer_norm_epsilon")?.doubleValue
        slidingWindow = int("attention.sliding_window")
        // Which layers slide: one global layer in every N, or llama.cpp's per-layer array
        // (bool or uint32, nonzero = sliding) as a depth-pruned gemma carries it.
        if let pattern = value("attention.sliding_window_pattern") {
            if let n = pattern.intValue {
                slidingWindowPattern = n
            } else if let items = pattern.arrayValue?.values() {
                layerTypes = items.map { v in
                    let sliding: Bool
                    if case let .bool(b) = v { sliding = b } else { sliding = (v.intValue ?? 0) != 0 }
                    return sliding ? "sliding_attention" : "full_attention"
                }
            }
        }
        ropeDimensionCount = int("rope.dimension_count")
        attnLogitSoftcapping = value("attn_logit_softcapping")?.doubleValue
        finalLogitSoftcapping = value("final_logit_softcapping")?.doubleValue
        if let kind = value("rope.scaling.type")?.stringValue, kind != "none" {
            var s = RopeScaling()
            s.ropeType = kind
            s.factor = value("rope.scaling.factor")?.doubleValue
            s.originalMaxPositionEmbeddings = int("rope.scaling.original_context_length")
            s.betaFast = value("rope.scaling.yarn_beta_fast")?.doubleValue
            s.betaSlow = value("rope.scaling.yarn_beta_slow")?.doubleValue
            // llama.cpp multiplies YaRN's own 0.1·ln(factor) + 1 by attn_factor.
            if kind == "yarn", let a = value("rope.scaling.attn_factor")?.doubleValue {
                s.attentionFactor = a * RotaryFrequencies.yarnMscale(s.factor ?? 1)
            }
            ropeScaling = s
        } else if let a = value("rope.scaling.attn_factor")?.doubleValue {
            // phi3's LongRoPE: llama.cpp's converter writes no type, only the attention
            // factor and the original context; the factors are tensors (rope_factors_*).
            var s = RopeScaling()
            s.ropeType = "longrope"
            s.attentionFactor = a
            s.originalMaxPositionEmbeddings = int("rope.scaling.original_context_length")
            ropeScaling = s
        }
        originalMaxPositionEmbeddings = int("rope.scaling.original_context_length")
        numExperts = int("expert_count").flatMap { $0 > 0 ? $0 : nil }
        numExpertsPerTok = int("expert_used_count")
        moeIntermediateSize = int("expert_feed_forward_length")
        sharedExpertIntermediateSize = int("expert_shared_feed_forward_length")
        if case let .bool(b)? = value("expert_weights_norm") { normTopkProb = b }
    }
}

extension ModelConfig {
    /// `config.json` for `transformers`, for a model of `architecture`.
    public func hfConfigJSON(architecture: Architecture, tiedEmbeddings: Bool, torchDType: String,
                             bosTokenID: Int?, eosTokenID: Int?, padTokenID: Int? = nil) -> [UInt8] {
        var w = JSONWriter(pretty: true)
        w.beginObject()
        w.beginArray(key: "architectures")
        w.string(architecture.hfClass)
        w.endArray()
        w.string(architecture.hfModelType, key: "model_type")
        func int(_ v: Int?, _ key: String) { if let v { w.int(v, key: key) } }
        int(hiddenSize, "hidden_size")
        int(intermediateSize, "intermediate_size")
        int(numHiddenLayers, "num_hidden_layers")
        int(numAttentionHeads, "num_attention_heads")
        int(numKeyValueHeads, "num_key_value_heads")
        // llama.cpp's head size: key_length, else hidden / heads (never the rotary dims,
        // which are fewer under partial rotary).
        let headDim = headDim ?? {
            guard let h = hiddenSize, let n = numAttentionHeads, n > 0 else { return nil }
            return h / n
        }() ?? ropeDimensionCount
        int(headDim, "head_dim")
        int(vocabSize, "vocab_size")
        int(maxPositionEmbeddings, "max_position_embeddings")
        int(originalMaxPositionEmbeddings, "original_max_position_embeddings")
        if let e = expertCount, e > 0 {
            // Mixtral names the count num_local_experts, the Qwen MoEs num_experts.
            int(e, architecture.hfModelType == "mixtral" ? "num_local_experts" : "num_experts")
            int(numExpertsPerTok, "num_experts_per_tok")
            int(moeIntermediateSize, "moe_intermediate_size")
            int(sharedExpertIntermediateSize, "shared_expert_intermediate_size")
            if architecture.hfModelType != "mixtral", let spec = try? architecture.spec(self, format: .gguf, ropeFactors: nil, path: "") {
                // GGUF has no key for it: llama.cpp fixes it per family, as the spec does.
                w.bool(normTopkProb ?? spec.expertWeightsNorm, key: "norm_topk_prob")
            }
        }
        if architecture.usesLayerNorm {
            if let e = normEps ?? rmsNormEps { w.raw(JSONWriter.number(Float(e)), key: "norm_eps") }
        } else if let e = rmsNormEps {
            w.raw(JSONWriter.number(Float(e)), key: "rms_norm_eps")
        }
        var partial = partialRotaryFactor
        if partial == nil, let r = ropeDimensionCount, let d = headDim, r != d, d > 0 { partial = Double(r) / Double(d) }
        if let f = partial { w.real(f, key: "partial_rotary_factor") }
        if let v = queryPreAttnScalar { w.double(v, key: "query_pre_attn_scalar") }  // an int in transformers
        if let v = attnLogitSoftcapping { w.real(v, key: "attn_logit_softcapping") }
        if let v = finalLogitSoftcapping { w.real(v, key: "final_logit_softcapping") }
        if let b = attentionBias { w.bool(b, key: "attention_bias") }
        if let b = mlpBias { w.bool(b, key: "mlp_bias") }
        if let t = ropeTheta { w.double(t, key: "rope_theta") }
        if let s = ropeScaling {
            w.beginObject(key: "rope_scaling")
            if let k = s.kind { w.string(k, key: "rope_type") }
            // transformers v5 checks the factor vectors' length against the rotary
            // dims it reads here, not from the top level.
            if let f = partial, s.shortFactor != nil || s.longFactor != nil { w.real(f, key: "partial_rotary_factor") }
            if let f = s.factor { w.double(f, key: "factor") }
            int(s.originalMaxPositionEmbeddings, "original_max_position_embeddings")
            if let v = s.betaFast { w.double(v, key: "beta_fast") }
            if let v = s.betaSlow { w.double(v, key: "beta_slow") }
            if let v = s.attentionFactor { w.double(v, key: "attention_factor") }
            if let v = s.lowFreqFactor { w.double(v, key: "low_freq_factor") }
            if let v = s.highFreqFactor { w.double(v, key: "high_freq_factor") }
            for (key, values) in [("short_factor", s.shortFactor), ("long_factor", s.longFactor)] {
                guard let values else { continue }
                w.beginArray(key: key)
                for v in values { w.real(v) }
                w.endArray()
            }
            w.endObject()
        }
        // 0 is GGUF's "no window" (phi3); transformers reads a window of 0 as one.
        if let w = slidingWindow, w > 0 { int(w, "sliding_window") }
        if let types = layerTypes {
            w.beginArray(key: "layer_types")
            for t in types { w.string(t) }
            w.endArray()
        }
        w.string(architecture.hfActivation.value, key: architecture.hfActivation.key)
        w.bool(tiedEmbeddings, key: "tie_word_embeddings")
        int(bosTokenID, "bos_token_id")
        int(eosTokenID, "eos_token_id")
        int(padTokenID, "pad_token_id")
        w.string(torchDType, key: "torch_dtype")
        w.endObject()
        return Array((w.text + "\n").utf8)
    }

    /// The `{arch}.*` GGUF keys llama.cpp reads for these hyper-parameters.
    public func ggufMetadata(architecture: Architecture) -> [MetadataEntry] {
        let a = architecture.ggufOutputName
        var out: [MetadataEntry] = [MetadataEntry(key: "general.architecture", value: .string(a))]
        func u32(_ key: String, _ v: Int?) { if let v, v >= 0, v <= Int(UInt32.max) { out.append(MetadataEntry(key: "\(a).\(key)", value: .uint32(UInt32(v)))) } }
        func f32(_ key: String, _ v: Double?) { if let v { out.append(MetadataEntry(key: "\(a).\(key)", value: .float32(Float(v)))) } }
        u32("block_count", numHiddenLayers)
        u32("context_length", maxPositionEmbeddings)
        u32("embedding_length", hiddenSize)
        u32("feed_forward_length", intermediateSize)
        u32("attention.head_count", numAttentionHeads)
        u32("attention.head_count_kv", numKeyValueHeads ?? numAttentionHeads)
        f32("rope.freq_base", ropeTheta)
        if architecture.usesLayerNorm {
            f32("attention.layer_norm_epsilon", normEps ?? rmsNormEps)
        } else {
            f32("attention.layer_norm_rms_epsilon", rmsNormEps)
        }
        if let h = headDim {
            u32("attention.key_length", h)
            u32("attention.value_length", h)
        }
        let fullRotary = headDim ?? {
            guard let h = hiddenSize, let n = numAttentionHeads, n > 0 else { return nil }
            return h / n
        }()
        u32("rope.dimension_count", ropeDimensionCount ?? fullRotary.map { d in partialRotaryFactor.map { Int(Double(d) * $0) } ?? d })
        u32("vocab_size", vocabSize)
        if let e = expertCount, e > 0 {
            u32("expert_count", e)
            u32("expert_used_count", numExpertsPerTok)
            u32("expert_feed_forward_length", moeIntermediateSize)
            u32("expert_shared_feed_forward_length", sharedExpertIntermediateSize)
        }
        u32("attention.sliding_window", slidingWindow)
        if let entry = Self.slidingPatternEntry(architecture: architecture, layerTypes: layerTypes) { out.append(entry) }
        // llama3 scaling is a factor vector in GGUF (`rope_freqs.weight`, see
        // `llama3RopeFactors`), not keys: llama.cpp aborts on a `llama3` scaling type.
        if let s = ropeScaling, s.kind == "longrope" || s.kind == "su" {
            // As llama.cpp's converter writes phi3's: no type, the attention factor and the
            // original context (the factors are tensors).
            let original = originalMaxPositionEmbeddings ?? s.originalMaxPositionEmbeddings
            u32("rope.scaling.original_context_length", original)
            f32("rope.scaling.attn_factor", s.attentionFactor ?? RotaryFrequencies.longropeAttentionFactor(context: maxPositionEmbeddings, original: original))
        } else if let s = ropeScaling, let kind = s.kind, kind != "llama3" {
            out.append(MetadataEntry(key: "\(a).rope.scaling.type", value: .string(kind)))
            f32("rope.scaling.factor", s.factor)
            u32("rope.scaling.original_context_length", s.originalMaxPositionEmbeddings)
            f32("rope.scaling.yarn_beta_fast", s.betaFast)
            f32("rope.scaling.yarn_beta_slow", s.betaSlow)
            if kind == "yarn", let a = RotaryFrequencies.yarnAttentionFactor(s), a != RotaryFrequencies.yarnMscale(s.factor ?? 1) {
                f32("rope.scaling.attn_factor", a / RotaryFrequencies.yarnMscale(s.factor ?? 1))
            }
        }
        return out
    }

    /// What llama.cpp's converter writes as `rope_freqs.weight` for Llama 3.1's scaling:
    /// per rotary pair, the divisor of its frequency (1 for the fast pairs, the factor for
    /// the slow ones, a blend between). Nil unless the config scales RoPE that way.
    public func llama3RopeFactors(dims: Int) -> [Float]? {
        guard let s = ropeScaling, s.kind == "llama3", dims >= 2 else { return nil }
        let base = RotaryFrequencies.base(ropeTheta ?? 10000, dims: dims)
        guard let scaled = RotaryFrequencies.scaled(base, scaling: s, factors: nil) else { return nil }
        return zip(base, scaled).map { Float($0 / $1) }
    }

    /// The `rope_scaling` that gives `factors` (a GGUF `rope_freqs.weight`) for RoPE of
    /// `dims` dimensions and this config's base, with Llama 3.1's original context of 8192
    /// (GGUF does not keep it; only its ratios to the band edges matter). Nil when no
    /// llama3 scaling reproduces the factors to 1e-4.
    public func llama3Scaling(fromFactors factors: [Float], dims: Int) -> RopeScaling? {
        let base = RotaryFrequencies.base(ropeTheta ?? 10000, dims: dims)
        guard factors.count == base.count, let factor = factors.max().map(Double.init), factor > 1 else { return nil }
        let original = 8192.0
        var s = RopeScaling()
        s.ropeType = "llama3"
        s.factor = factor
        s.originalMaxPositionEmbeddings = Int(original)
        s.lowFreqFactor = 1
        s.highFreqFactor = 4
        // In the blended band, 1/f = (1 − t)/factor + t with t = original·inv/(2π) − low, over
        // (high − low): a line in t whose two points give low and high.
        let band = factors.indices.filter { Double(factors[$0]) > 1 + 1e-6 && Double(factors[$0]) < factor * (1 - 1e-6) }
        if band.count >= 2 {
            let t = band.map { (1 / Double(factors[$0]) - 1 / factor) / (1 - 1 / factor) }
            let y = band.map { original * base[$0] / (2 * Double.pi) }
            let (i, j) = (0, band.count - 1)
            if t[i] != t[j] {
                let span = (y[j] - y[i]) / (t[j] - t[i])
                let low = y[i] - t[i] * span
                s.lowFreqFactor = low
                s.highFreqFactor = low + span
            }
        }
        var c = self
        c.ropeScaling = s
        guard let back = c.llama3RopeFactors(dims: dims),
              zip(back, factors).allSatisfy({ abs(Double($0) - Double($1)) <= 1e-4 * Double(abs($1)) }) else { return nil }
        return s
    }

    /// `{arch}.attention.sliding_window_pattern` as llama.cpp reads it for the families
    /// that have one (one bool per layer, true = sliding), when the layers' kinds are
    /// known: a model whose depth was pruned no longer follows the family's fixed period.
    public static func slidingPatternEntry(architecture: Architecture, layerTypes: [String]?) -> MetadataEntry? {
        guard architecture.ggufSlidingPattern, let types = layerTypes, !types.isEmpty else { return nil }
        return MetadataEntry(key: "\(architecture.ggufOutputName).attention.sliding_window_pattern",
                             value: .array(MetadataArray(values: types.map { .bool($0 == "sliding_attention") }, elementType: "bool")))
    }
}
