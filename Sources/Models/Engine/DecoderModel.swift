import Basics
import CheckpointIO
import TensorMath

/// Engine-side errors about a model, as opposed to errors in its files.
public enum ModelError: UserFacingError, Sendable, Equatable {
    case unknownArchitecture(path: String, name: String)
    case missingTensors(path: String, names: [String])
    case unsupportedTensorType(path: String, tensor: String, type: String)
    case badShape(path: String, tensor: String, expected: [Int], found: [Int])
    case tokenOutOfVocabulary(id: Int32, vocab: Int)
    case contextTooLong(tokens: Int, context: Int)

    public var description: String {
        switch self {
        case let .unknownArchitecture(path, name):
            return "\(path): architecture '\(name)' is not one the engine runs (it runs \(Architecture.all.map(\.ggufName).joined(separator: ", ")))"
        case let .missingTensors(path, names):
            let shown = names.prefix(12).joined(separator: ", ")
            return "\(path): \(names.count) tensor(s) the model needs are missing: \(shown)\(names.count > 12 ? ", …" : "")"
        case let .unsupportedTensorType(path, tensor, type):
            return "\(path): tensor '\(tensor)' is stored as \(type), which has no matrix kernel (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL and Q2_K–Q6_K have)"
        case let .badShape(path, tensor, expected, found):
            return "\(path): tensor '\(tensor)' has shape \(found), the config implies \(expected)"
        case let .tokenOutOfVocabulary(id, vocab):
            return "token id \(id) is outside the vocabulary (0..<\(vocab))"
        case let .contextTooLong(tokens, context):
            return "a sequence of \(tokens) tokens is longer than the model's context of \(context)"
        }
    }

    public var exitCode: ExitCode {
        switch self {
        case .unknownArchitecture, .unsupportedTensorType: return .unsupported
        case .missingTensors, .badShape, .tokenOutOfVocabulary: return .dataError
        case .contextTooLong: return .usage
        }
    }
}

/// A decoder model opened for inference: its spec and its tensors by role, read in place
/// from the mapped checkpoint (GGUF or safetensors, through the same name maps as
/// `convert`). Nothing is loaded until a layer asks for it.
public final class DecoderModel: @unchecked Sendable {
    public let checkpoint: any Checkpoint
    public let architecture: Architecture
    public let spec: DecoderSpec
    public let config: ModelConfig
    private let byRole: [TensorRole: TensorView]
    /// GGUF tensors holding RoPE frequency divisors: llama3's, and phi3's short LongRoPE
    /// factors (its long ones, `rope_factors_long.weight`, apply past the engine's context).
    static let ropeFactorTensors: Set<String> = ["rope_freqs.weight", "rope_factors_short.weight"]

    public var path: String { checkpoint.path }

    public init(path: String) throws {
        let ckpt = try openCheckpoint(path: path)
        checkpoint = ckpt
        let config: ModelConfig
        let archName: String
        switch ckpt.format {
        case .gguf:
            config = ModelConfig(gguf: ckpt.metadata)
            archName = ckpt.metadata["general.architecture"]?.stringValue ?? "(none)"
        case .safetensors:
            guard let c = try ModelConfig.beside(checkpointPath: path) else {
                throw CheckpointError.unsupported(path: path, reason: "no config.json beside the safetensors files; the engine needs one")
            }
            config = c
            archName = c.modelType.flatMap { Architecture.hf(modelType: $0)?.ggufName } ?? c.modelType ?? "(none)"
        }
        guard let arch = Architecture.gguf(archName) else {
            throw ModelError.unknownArchitecture(path: path, name: archName)
        }
        architecture = arch
        var roles: [TensorRole: TensorView] = [:]
        var ropeFactors: [Float]?
        for t in ckpt.tensors {
            if ckpt.format == .gguf, Self.ropeFactorTensors.contains(t.name) {
                var f = [Float](repeating: 0, count: t.elementCount)
                try f.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: $0.baseAddress!) }
                ropeFactors = f
                continue
            }
            let role = ckpt.format == .gguf ? arch.role(ggufName: t.name) : arch.role(hfName: t.name)
            if let role { roles[role] = t }
        }
        var c = config
        if c.vocabSize == nil, let e = roles[.embed] { c.vocabSize = e.shape.first }
        self.config = c
        let spec = try arch.spec(c, format: ckpt.format, ropeFactors: ropeFactors, path: path)
        // A layer count beyond the tensors is refused by name before anything is sized by it.
        let present = roles.keys.reduce(0) { n, role in role.layerIndex.map { max(n, $0 + 1) } ?? n }
        if present > 0, spec.layers > present {
            throw CheckpointError.badMetadata(path: path, key: ckpt.format == .gguf ? "\(arch.ggufName).block_count" : "num_hidden_layers",
                                              reason: "the config says \(spec.layers) layers; the checkpoint holds tensors for \(present)")
        }
        self.spec = spec
        // A fused matrix (phi3's qkv and gate_up) is read as row slices, one view a part,
        // so the engine, statistics and scoring see Q, K, V, gate and up as everywhere else.
        for (role, t) in roles {
            guard case let .layer(i, fused) = role, !fused.fusedParts(spec).isEmpty,
                  t.shape.count == 2, t.shape[0] == fused.fusedParts(spec).reduce(0, { $0 + $1.rows }) else { continue }
            var r0 = 0
            for (part, rows) in fused.fusedParts(spec) {
                roles[.layer(i, part)] = t.slice(r0..<(r0 + rows))
                r0 += rows
            }
        }
        // GGUF stacks each layer's experts in one [experts, rows, cols] tensor: one view an
        // expert, so every expert's matrix is addressed as HF files address it.
        for (role, t) in roles {
            // A stack that does not split is left for checkTensors to name its missing experts.
            guard case let .layer(i, stacked) = role, let part = stacked.stackedPart, t.shape.count == 3, let experts = t.outerSlices else { continue }
            for (e, view) in experts.enumerated() { roles[.expert(i, e, part)] = view }
        }
        byRole = roles
        try checkTensors()
    }

    private func name(_ role: TensorRole) -> String {
        (checkpoint.format == .gguf ? architecture.ggufName(role) : architecture.hfName(role)) ?? role.description
    }

    /// Every tensor the forward pass reads, with the shape the spec implies: the
    /// architecture's list, less the optional ones the checkpoint leaves out.
    /// (The order is the architecture's training order: the student's slots follow it.)
    public func required() -> [(TensorRole, [Int])] {
        architecture.tensors(spec).compactMap { t in t.optional && byRole[t.role] == nil ? nil : (t.role, t.shape) }
    }

    private func checkTensors() throws {
        var missing: [String] = []
        for (role, shape) in required() {
            guard let t = byRole[role] else { missing.append(name(role)); continue }
            // Vectors may be stored as [n] or [1, n]; matrices must match exactly.
            let found = shape.count == 1 ? [t.elementCount] : t.shape
            if found != shape { throw ModelError.badShape(path: t.file.path, tensor: t.name, expected: shape, found: t.shape) }
            if shape.count == 2, role != .embed {
                guard let id = Self.ggmlType(t.dtype), WeightMatrix.isSupported(ggmlType: id) else {
                    throw ModelError.unsupportedTensorType(path: t.file.path, tensor: t.name, type: t.dtype.name)
                }
            } else if !TensorDecoder.canDecode(t.dtype) {
                throw ModelError.unsupportedTensorType(path: t.file.path, tensor: t.name, type: t.dtype.name)
            }
        }
        if !missing.isEmpty { throw ModelError.missingTensors(path: path, names: missing) }
    }

    static func ggmlType(_ d: TensorDType) -> Int32? { d.ggmlEquivalent.map { Int32($0.id) } }

    public func tensor(_ role: TensorRole) -> TensorView? { byRole[role] }

    /// A fingerprint of the model: its resolved spec and its tensor index (names, dtypes,
    /// shapes, in file order). Statistics and caches made from one model refuse another.
    public var identity: String {
        var h = FNV1a64()
        let s = spec
        h.add("\(s.architecture) L\(s.layers) H\(s.hidden) h\(s.heads) kv\(s.kvHeads) d\(s.headDim) f\(s.ffn) V\(s.vocab)")
        if s.isMixtureOfExperts { h.add(" E\(s.experts) k\(s.expertsUsed) s\(s.sharedFFN) n\(s.expertWeightsNorm)") }
        for t in checkpoint.tensors { h.add("\(t.name) \(t.dtype.name) \(t.shape)") }
        return h.hex
    }

    /// The LM head: its own tensor, or the embedding when tied.
    public var lmHeadView: TensorView { byRole[.lmHead] ?? byRole[.embed]! }

    func matrix(_ role: TensorRole) -> WeightMatrix {
        Self.matrix(role == .lmHead ? lmHeadView : byRole[role]!)
    }

    static func matrix(_ t: TensorView) -> WeightMatrix {
        let rows = t.rowCount, cols = t.rowLength
        return WeightMatrix(ggmlType: ggmlType(t.dtype)!, base: t.bytes.baseAddress!, rowBytes: t.byteCount / max(rows, 1),
                            rows: rows, columns: cols)
    }

    /// A norm (or bias) vector as f32, with the HF gemma offset applied.
    func vector(_ role: TensorRole, offset: Float = 0) throws -> FloatBuffer? {
        guard let t = byRole[role] else { return nil }
        let b = FloatBuffer(count: t.elementCount)
        try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: b.pointer)
        if offset != 0 { for i in 0..<b.count { b[i] += offset } }
        return b
    }

    /// Bytes of every tensor of layer `i`, per file, for paging them in or out.
    func layerRanges(_ i: Int) -> [(MappedFile, Range<Int>)] {
        // Slices (fused parts, GGUF's experts) share their tensor's name: one range a tensor.
        var widest: [String: TensorView] = [:]
        for (role, t) in byRole where role.layerIndex == i && t.byteCount > (widest[t.name]?.byteCount ?? -1) { widest[t.name] = t }
        return widest.values.map { t in (t.file, t.offset..<(t.offset + t.byteCount)) }
    }
}
