import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import CKernels
import Models

/// The element type a conversion writes.
package enum DTypeChoice: Sendable, Equatable {
    /// The source's type where the target format has it; quantized GGUF types become
    /// F32 in safetensors (exact: every dequantized value is an f32).
    case keep
    case f32, f16, bf16
    /// A GGUF block type (GGUF output only). 1-D tensors (norms, biases) stay F32, as
    /// llama.cpp keeps them.
    case quantized(GGMLType)

    package static func parse(_ text: String) -> DTypeChoice? {
        switch text.lowercased() {
        case "keep": return .keep
        case "f32": return .f32
        case "f16": return .f16
        case "bf16": return .bf16
        default:
            guard let t = GGMLType.named(text), t.isQuantized, Converter.encodable.contains(t.name) else { return nil }
            return .quantized(t)
        }
    }
}

/// Conversions this build refuses rather than writing a file no loader takes.
package enum ConversionError: UserFacingError, Sendable, Equatable {
    /// Across formats, an architecture whose tensor names ckpt cannot translate.
    case noNameMap(path: String, architecture: String)

    package var description: String {
        switch self {
        case let .noNameMap(path, architecture):
            return "\(path): architecture '\(architecture)' has no name map, so its tensors cannot be renamed for the other format; nothing was written"
        }
    }

    package var exitCode: ExitCode { .unsupported }
}

package struct ConversionOptions: Sendable {
    package var target: CheckpointFormat
    package var dtype: DTypeChoice = .keep
    /// Bytes of tensor data per safetensors shard (HF's default 5 GB).
    package var shardSize: Int = 5_000_000_000
    package var overwrite = false
    /// Carry config.json, generation_config.json and other small files along.
    package var includeSideFiles = true
    /// A structural rewrite (pruning) applied on the way; same format in and out.
    package var edit: CheckpointEdit?
    /// GGUF → GGUF: keep the source's `split.*` keys (rewriting one split of a set in place).
    package var keepSplitMetadata = false
    /// Across formats, write an architecture without a name map under its own tensor
    /// names (a file llama.cpp or transformers will not load as a model). Off, it is refused.
    package var keepNames = false

    package init(target: CheckpointFormat) { self.target = target }
}

/// What a conversion did, for the summary line and `--json`.
package struct ConversionSummary: Sendable {
    package var tensors = 0
    package var bytesRead = 0
    package var bytesWritten = 0
    package var seconds = 0.0
    package var outputFiles: [String] = []
    package var warnings: [String] = []
}

/// Converts a checkpoint between GGUF and HF safetensors (and within one format: new
/// dtype, new shard size), tensor by tensor and a block of rows at a time, so memory
/// stays one buffer however large the model. Names, the Q/K row order and gemma's norm
/// offset are translated through `Architecture`.
package final class Converter {
    /// GGUF block types this build can encode.
    package static let encodable: Set<String> = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
    /// llama.cpp's `llama_ftype` for a file whose matrices are all of one type (K-quants: the _S variants).
    static let fileTypeCodes: [String: UInt32] = ["F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
                                                  "Q4_K": 14, "Q5_K": 16, "Q6_K": 18, "BF16": 32]
    /// llama.cpp's fallbacks for rows that are not a multiple of 256.
    static let fallback = ["Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"]
    /// Size of one working buffer in f32 elements (16 MiB).
    static let bufferElements = 1 << 22

    struct Job {
        let source: TensorView
        /// Further sources written after `source` into the same output tensor (HF's
        /// per-expert matrices stacked into GGUF's `*_exps`, or the experts a prune keeps),
        /// each with its own row and column selection.
        var stacked: [(view: TensorView, rowMap: [Int]?, columns: [Int]?)] = []
        let plan: TensorPlan
        /// Output row r is source row rowMap[r].
        let rowMap: [Int]?
        /// Output column c is source column columns[c] (ascending).
        var columns: [Int]? = nil
        let offset: Float
        /// Replacement contents, in the source's layout.
        var values: TensorValues? = nil
    }

    package let source: any Checkpoint
    package let output: String
    package let options: ConversionOptions
    package private(set) var warnings: [String] = []
    private let architecture: Architecture?
    private var config: ModelConfig
    private var jobs: [Job] = []
    /// The source's tensors by name, built when experts are stacked (one lookup an expert).
    private var sourceByName: [String: TensorView] = [:]
    private var extraFiles: [(String, [UInt8])] = []
    private var outputMetadata: [MetadataEntry] = []
    private var fallbacks: [String: [String]] = [:]
    /// Files copied beside the output as they are (any size: copied by the kernel).
    private var sideFilePaths: [(String, String)] = []

    package init(source: any Checkpoint, output: String, options: ConversionOptions) throws {
        self.source = source
        self.output = output
        self.options = options
        switch source.format {
        case .gguf:
            config = ModelConfig(gguf: source.metadata)
            let name = source.metadata["general.architecture"]?.stringValue ?? ""
            // llama.cpp writes Mixtral as `llama` with experts; in HF it is its own class.
            architecture = name == "llama" && (config.expertCount ?? 0) > 0 ? .mixtral : Architecture.gguf(name)
        case .safetensors:
            config = try ModelConfig.beside(checkpointPath: source.path) ?? ModelConfig()
            architecture = config.modelType.flatMap { Architecture.hf(modelType: $0) }
        }
        if options.edit != nil, source.format != options.target {
            throw CheckpointError.unsupported(path: output, reason: "a structural edit keeps the format (GGUF to GGUF, safetensors to safetensors)")
        }
        if case .quantized = options.dtype, options.target != .gguf {
            throw CheckpointError.unsupported(path: output, reason: "quantized types are for GGUF output only; safetensors takes f32, f16 or bf16")
        }
        try planTensors()
        try planSideFiles()
        if !options.includeSideFiles { extraFiles = []; sideFilePaths = [] }
        if let edit = options.edit {
            let keys = Set(edit.ggufMetadata.map(\.key))
            outputMetadata = outputMetadata.filter { !keys.contains($0.key) } + edit.ggufMetadata
            let names = Set(edit.files.map(\.name))
            sideFilePaths = sideFilePaths.filter { !names.contains($0.0) }
            extraFiles = extraFiles.filter { !names.contains($0.0) } + edit.files.map { ($0.name, $0.contents) }
        }
        if options.target == .gguf, case let .quantized(q) = options.dtype {
            outputMetadata = outputMetadata.filter { $0.key != "general.file_type" }
            if let code = Self.fileTypeCodes[q.name] { outputMetadata.append(MetadataEntry(key: "general.file_type", value: .uint32(code))) }
        } else if options.target == .gguf, options.dtype != .keep {
            let name: String = options.dtype == .f32 ? "F32" : options.dtype == .f16 ? "F16" : "BF16"
            outputMetadata = outputMetadata.filter { $0.key != "general.file_type" }
            outputMetadata.append(MetadataEntry(key: "general.file_type", value: .uint32(Self.fileTypeCodes[name]!)))
        }
    }

    private var crossesFormats: Bool { source.format != options.target }

    private func planTensors() throws {
        let toGGUF = options.target == .gguf
        if crossesFormats && architecture == nil {
            let name = source.format == .gguf
                ? (source.metadata["general.architecture"]?.stringValue ?? "(none)")
                : (config.modelType ?? "(no config.json)")
            guard options.keepNames else {
                throw ConversionError.noNameMap(path: source.path, architecture: name)
            }
            warnings.append("architecture '\(name)' has no name map: tensor names are kept as they are, and no row order or value offset is applied")
        }
        if crossesFormats, let arch = architecture, arch.permutesQK { try planLlama3Rope(toGGUF: toGGUF) }
        if crossesFormats { try planLongRope(toGGUF: toGGUF) }
        var vision = 0
        defer { if vision > 0 { warnings.append("\(vision) vision-tower and projector tensors not written: the GGUF holds the text model") } }
        for t in source.tensors {
            // llama.cpp loads a multimodal model's text part from one GGUF and its vision part
            // from another (mmproj); a text GGUF with the vision tensors in it does not load.
            if crossesFormats, toGGUF, MultimodalNames.isVisionTensor(t.name) { vision += 1; continue }
            if crossesFormats, !toGGUF, t.name == Self.ropeFreqsName, config.ropeScaling?.kind == "llama3" { continue }
            if crossesFormats, !toGGUF, Self.longRopeNames.contains(t.name) { continue }
            let role = crossesFormats ? architecture.flatMap { source.format == .gguf ? $0.role(ggufName: t.name) : $0.role(hfName: t.name) } : nil
            if let arch = architecture, let role, try planExperts(t, role: role, arch: arch, toGGUF: toGGUF) { continue }
            let edit = options.edit?.tensors[t.name]
            if edit?.drop == true { continue }
            if let slices = edit?.slices {
                try planSlices(t, slices, name: edit?.name ?? t.name, crossesFormats: crossesFormats)
                continue
            }
            var name = edit?.name ?? t.name
            var rowMap: [Int]? = t.shape.count >= 2 ? edit?.rows : nil
            var offset: Float = 0
            if crossesFormats, let arch = architecture {
                if let role, let mapped = toGGUF ? arch.ggufName(role) : arch.hfName(role) {
                    name = mapped
                    rowMap = arch.rowPermutation(role, rows: t.shape.first ?? 1, config: config, toGGUF: toGGUF)
                    if arch.permutesQK, rowMap == nil, case let .layer(_, part) = role, part == .attnQ || part == .attnK {
                        throw CheckpointError.badTensor(path: source.path, tensor: t.name,
                            reason: "its rows must be reordered for \(arch.ggufName), but the head counts (\(config.numAttentionHeads.map(String.init) ?? "?") / \(config.numKeyValueHeads.map(String.init) ?? "?")) do not divide its \(t.shape.first ?? 0) rows into pairs")
                    }
                    offset = arch.valueOffset(role) * (toGGUF ? 1 : -1)
                } else {
                    warnings.append("tensor '\(t.name)' has no \(arch.ggufName) role: written under the same name")
                }
            }
            var shape = t.shape
            if let rows = rowMap, t.shape.count >= 2 {
                guard t.shape.count == 2, rows.allSatisfy({ $0 >= 0 && $0 < t.shape[0] }) else {
                    throw CheckpointError.badTensor(path: source.path, tensor: t.name, reason: "row selection outside its \(t.shape[0]) rows")
                }
                shape[0] = rows.count
            }
            if let cols = edit?.columns {
                guard let last = t.shape.last, zip(cols, cols.dropFirst()).allSatisfy({ $0 < $1 }), cols.allSatisfy({ $0 >= 0 && $0 < last }) else {
                    throw CheckpointError.badTensor(path: source.path, tensor: t.name, reason: "column selection is not ascending within its \(t.shape.last ?? 0) columns")
                }
                shape[shape.count - 1] = cols.count
            }
            if case .layer(_, .sharedRouter)? = role {
                // qwen2moe's shared-expert gate: a vector in GGUF, a one-row Linear in HF.
                shape = toGGUF ? [t.elementCount] : [1, t.elementCount]
            }
            let dtype = try outputDType(for: t, rowLength: shape.last ?? 1)
            let plan = try TensorPlan(name: name, dtype: dtype, shape: shape)
            if let v = edit?.values {
                guard v.count == t.elementCount, rowMap == nil, edit?.columns == nil, !crossesFormats else {
                    throw CheckpointError.badTensor(path: source.path, tensor: t.name, reason: "replacement values (\(v.count)) must match its \(t.elementCount) elements, with no other change")
                }
            }
            jobs.append(Job(source: t, plan: plan, rowMap: rowMap, columns: edit?.columns, offset: offset, values: edit?.values))
        }
        for (change, tensors) in fallbacks.sorted(by: { $0.key < $1.key }) {
            warnings.append("\(tensors.count) tensors (e.g. '\(tensors[0])') have rows that do not split into 256-element blocks: \(change), as llama.cpp falls back")
        }
        var names = Set<String>()
        for j in jobs where !names.insert(j.plan.name).inserted {
            throw CheckpointError.badTensor(path: source.path, tensor: j.source.name, reason: "maps to '\(j.plan.name)', which another tensor also maps to")
        }
    }

    static let ropeFreqsName = "rope_freqs.weight"

    /// A stacked tensor cut to some of its slices, each with its own rows and columns:
    /// one output tensor [slices, rows, cols] written slice by slice.
    private func planSlices(_ t: TensorView, _ slices: [SliceEdit], name: String, crossesFormats: Bool) throws {
        func bad(_ why: String) -> CheckpointError { .badTensor(path: source.path, tensor: t.name, reason: why) }
        guard t.shape.count == 3, let views = t.outerSlices, !crossesFormats else {
            throw bad("shape \(t.shape): only a stack [slices, rows, cols] is cut by slice, within one format")
        }
        guard let first = slices.first else { throw bad("the selection keeps no slice") }
        let rows = first.rows?.count ?? t.shape[1], cols = first.columns?.count ?? t.shape[2]
        for sl in slices {
            guard sl.source >= 0, sl.source < t.shape[0] else { throw bad("slice \(sl.source) is outside its \(t.shape[0])") }
            guard (sl.rows?.count ?? t.shape[1]) == rows, (sl.columns?.count ?? t.shape[2]) == cols else {
                throw bad("the kept slices would differ in shape: every slice keeps as many rows and columns")
            }
            if let r = sl.rows, !r.allSatisfy({ $0 >= 0 && $0 < t.shape[1] }) { throw bad("row selection outside its \(t.shape[1]) rows") }
            if let c = sl.columns, !(zip(c, c.dropFirst()).allSatisfy { $0 < $1 } && c.allSatisfy { $0 >= 0 && $0 < t.shape[2] }) {
                throw bad("column selection is not ascending within its \(t.shape[2]) columns")
            }
        }
        let plan = try TensorPlan(name: name, dtype: try outputDType(for: t, rowLength: cols), shape: [slices.count, rows, cols])
        var job = Job(source: views[first.source], plan: plan, rowMap: first.rows, columns: first.columns, offset: 0)
        job.stacked = slices.dropFirst().map { (views[$0.source], $0.rows, $0.columns) }
        jobs.append(job)
    }

    /// Experts cross formats as llama.cpp's converter carries them: HF's one matrix an
    /// expert is stacked into the layer's [experts, rows, cols] `ffn_*_exps` (the whole
    /// stack planned at expert 0), and a GGUF stack becomes one HF tensor an expert, read
    /// as a slice. True when `t` was planned (or belongs to a stack planned already).
    private func planExperts(_ t: TensorView, role: TensorRole, arch: Architecture, toGGUF: Bool) throws -> Bool {
        if toGGUF {
            guard case let .expert(i, e, part) = role, let stackedPart = part.expertStack else { return false }
            guard e == 0 else { return true }
            let count = config.expertCount ?? 0
            if sourceByName.isEmpty { sourceByName = Dictionary(source.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
            var members: [TensorView] = []
            for k in 0..<count {
                guard let name = arch.hfName(.expert(i, k, part)), let m = sourceByName[name] else {
                    throw CheckpointError.badTensor(path: source.path, tensor: t.name, reason: "expert \(k) of \(count) has no '\(arch.hfName(.expert(i, k, part)) ?? "?")' to stack with it")
                }
                guard m.shape == t.shape, m.dtype == t.dtype else {
                    throw CheckpointError.badTensor(path: source.path, tensor: m.name, reason: "shape \(m.shape) \(m.dtype.name) differs from expert 0's \(t.shape) \(t.dtype.name): experts stack only when alike")
                }
                members.append(m)
            }
            guard let name = arch.ggufName(.layer(i, stackedPart)), count > 0 else { return false }
            let plan = try TensorPlan(name: name, dtype: try outputDType(for: t, rowLength: t.shape.last ?? 1), shape: [count] + t.shape)
            var job = Job(source: members[0], plan: plan, rowMap: nil, offset: 0)
            job.stacked = members.dropFirst().map { ($0, nil, nil) }
            jobs.append(job)
            return true
        }
        guard case let .layer(i, stacked) = role, let part = stacked.stackedPart else { return false }
        guard t.shape.count == 3, let experts = t.outerSlices else {
            throw CheckpointError.badTensor(path: source.path, tensor: t.name, reason: "shape \(t.shape): a stack of experts is [experts, rows, cols]")
        }
        for (e, view) in experts.enumerated() {
            guard let name = arch.hfName(.expert(i, e, part)) else { return false }
            jobs.append(Job(source: view, plan: try TensorPlan(name: name, dtype: try outputDType(for: view, rowLength: view.rowLength), shape: view.shape),
                            rowMap: nil, offset: 0))
        }
        return true
    }

    /// Llama 3.1's RoPE scaling crosses formats as llama.cpp's converter carries it: HF's
    /// `rope_scaling` becomes a `rope_freqs.weight` factor vector (and no scaling keys),
    /// and that vector becomes `rope_scaling` again going back.
    private func planLlama3Rope(toGGUF: Bool) throws {
        let dims = config.ropeDimensionCount ?? config.headDim ?? {
            guard let h = config.hiddenSize, let n = config.numAttentionHeads, n > 0 else { return 0 }
            return h / n
        }()
        if toGGUF {
            guard let factors = config.llama3RopeFactors(dims: dims) else { return }
            var bytes: [UInt8] = []
            for f in factors { withUnsafeBytes(of: f.bitPattern.littleEndian) { bytes += $0 } }
            let view = TensorView(name: Self.ropeFreqsName, dtype: .safetensors(.F32), shape: [factors.count],
                                  file: MappedFile(copying: bytes, label: "rope_freqs (from rope_scaling)"), offset: 0, byteCount: bytes.count)
            jobs.append(Job(source: view, plan: try TensorPlan(name: Self.ropeFreqsName, dtype: .gguf(GGMLType.f32), shape: [factors.count]),
                            rowMap: nil, offset: 0))
        } else if let t = source.tensors.first(where: { $0.name == Self.ropeFreqsName }) {
            var f = [Float](repeating: 0, count: t.elementCount)
            try f.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: $0.baseAddress!) }
            guard let scaling = config.llama3Scaling(fromFactors: f, dims: dims) else {
                throw CheckpointError.unsupported(path: source.path, reason: "tensor '\(t.name)' holds RoPE factors that no Llama 3.1 rope_scaling reproduces, so config.json cannot express them")
            }
            config.ropeScaling = scaling
        }
    }

    /// phi3's LongRoPE factor vectors in GGUF, as llama.cpp's converter names them.
    static let longRopeNames: [String] = ["rope_factors_short.weight", "rope_factors_long.weight"]

    /// phi3's LongRoPE crosses formats as llama.cpp's converter carries it: HF's
    /// `rope_scaling.short_factor` / `long_factor` become two f32 tensors (the attention
    /// factor and original context become keys, see `ggufMetadata`), and back.
    private func planLongRope(toGGUF: Bool) throws {
        if toGGUF {
            guard let s = config.ropeScaling, s.kind == "longrope" || s.kind == "su" else { return }
            guard let short = s.shortFactor, let long = s.longFactor, short.count == long.count, !short.isEmpty else {
                throw CheckpointError.badMetadata(path: source.path, key: "rope_scaling", reason: "longrope needs short_factor and long_factor of one length")
            }
            for (name, values) in zip(Self.longRopeNames, [short, long]) {
                var bytes: [UInt8] = []
                for v in values { withUnsafeBytes(of: Float(v).bitPattern.littleEndian) { bytes += $0 } }
                let view = TensorView(name: name, dtype: .safetensors(.F32), shape: [values.count],
                                      file: MappedFile(copying: bytes, label: "\(name) (from rope_scaling)"), offset: 0, byteCount: bytes.count)
                jobs.append(Job(source: view, plan: try TensorPlan(name: name, dtype: .gguf(GGMLType.f32), shape: [values.count]), rowMap: nil, offset: 0))
            }
        } else {
            var factors: [[Double]] = []
            for name in Self.longRopeNames {
                guard let t = source.tensors.first(where: { $0.name == name }) else { return }
                var f = [Float](repeating: 0, count: t.elementCount)
                try f.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: $0.baseAddress!) }
                factors.append(f.map(Double.init))
            }
            var s = config.ropeScaling ?? ModelConfig.RopeScaling()
            s.ropeType = "longrope"
            s.shortFactor = factors[0]
            s.longFactor = factors[1]
            config.ropeScaling = s
        }
    }

    private func outputDType(for t: TensorView, rowLength: Int) throws -> TensorDType {
        // Only floating-point weights change type: integer, boolean and 8-bit-float tensors
        // (position ids, packed GPTQ/AWQ weights, FP8 scales) keep their encoding.
        if !Self.isConvertibleFloat(t.dtype) && options.dtype != .keep {
            return try outputDType(for: t, choice: .keep, rowLength: rowLength)
        }
        var choice = options.dtype
        // Pruned columns: a block type whose blocks no longer fit the rows is requantized
        // to the nearest type that fits (llama.cpp's fallbacks), else to F16.
        if choice == .keep, case let .gguf(g) = t.dtype, g.isQuantized, rowLength % g.blockSize != 0 {
            if let f = Self.fallback[g.name].flatMap(GGMLType.named), rowLength % f.blockSize == 0 {
                choice = .quantized(g)
            } else {
                fallbacks["\(g.name) → F16 (rows of \(rowLength))", default: []].append(t.name)
                choice = .f16
            }
        }
        return try outputDType(for: t, choice: choice, rowLength: rowLength)
    }

    /// Float types whose values `--dtype` may re-encode.
    static func isConvertibleFloat(_ d: TensorDType) -> Bool {
        switch d {
        case let .safetensors(s): return s == .F32 || s == .F16 || s == .BF16 || s == .F64
        case let .gguf(g): return g.name == "F32" || g.name == "F16" || g.name == "BF16" || g.name == "F64" || g.isQuantized
        }
    }

    private func outputDType(for t: TensorView, choice: DTypeChoice, rowLength: Int) throws -> TensorDType {
        func reject(_ why: String) -> CheckpointError {
            .unsupported(path: source.path, reason: "tensor '\(t.name)' (\(t.dtype.name)): \(why)")
        }
        let isVector = t.shape.count <= 1
        switch (options.target, choice) {
        case (.safetensors, .f32): return .safetensors(.F32)
        case (.safetensors, .f16): return .safetensors(.F16)
        case (.safetensors, .bf16): return .safetensors(.BF16)
        case (.gguf, .f32): return .gguf(GGMLType.f32)
        case (.gguf, .f16): return .gguf(isVector ? GGMLType.f32 : GGMLType.f16)
        case (.gguf, .bf16): return .gguf(isVector ? GGMLType.f32 : GGMLType.bf16)
        case let (.gguf, .quantized(q)):
            if isVector { return .gguf(GGMLType.f32) }
            if rowLength % q.blockSize == 0 { return .gguf(q) }
            // As llama.cpp does: a K-quant whose 256-element blocks do not fit the rows
            // falls back to a 32-element type of about the same precision.
            if let fallback = Self.fallback[q.name].flatMap(GGMLType.named), rowLength % fallback.blockSize == 0 {
                fallbacks["\(q.name) → \(fallback.name)", default: []].append(t.name)
                return .gguf(fallback)
            }
            throw reject("rows of \(rowLength) elements do not split into \(q.name) blocks of \(q.blockSize)")
        case (_, .quantized):
            throw reject("quantized types are for GGUF output only")
        case (.safetensors, .keep):
            switch t.dtype {
            case .safetensors: return t.dtype
            case let .gguf(g):
                switch g.name {
                case "F32": return .safetensors(.F32)
                case "F16": return .safetensors(.F16)
                case "BF16": return .safetensors(.BF16)
                case "F64": return .safetensors(.F64)
                case "I8": return .safetensors(.I8)
                case "I16": return .safetensors(.I16)
                case "I32": return .safetensors(.I32)
                case "I64": return .safetensors(.I64)
                default:
                    guard TensorDecoder.canDecode(t.dtype) else { throw reject("no decoder for \(g.name) yet") }
                    return .safetensors(.F32)
                }
            }
        case (.gguf, .keep):
            switch t.dtype {
            case .gguf: return t.dtype
            case let .safetensors(s):
                let name: String
                switch s {
                case .F32: name = "F32"
                case .F16: name = "F16"
                case .BF16: name = "BF16"
                case .F64: name = "F64"
                case .I8: name = "I8"
                case .I16: name = "I16"
                case .I32: name = "I32"
                case .I64: name = "I64"
                default: throw reject("GGUF has no \(s.rawValue); choose f32, f16, bf16 or a quantized type")
                }
                return .gguf(GGMLType.named(name)!)
            }
        }
    }

    private func planSideFiles() throws {
        switch (source.format, options.target) {
        case (.gguf, .safetensors):
            guard let arch = architecture else { break }
            let tied = !source.tensors.contains { arch.role(ggufName: $0.name) == .lmHead } || arch.alwaysTiedEmbeddings
            let torchDType: String
            switch options.dtype {
            case .bf16: torchDType = "bfloat16"
            case .f16: torchDType = "float16"
            default: torchDType = "float32"
            }
            let bos = source.metadata["tokenizer.ggml.bos_token_id"]?.intValue
            let eos = source.metadata["tokenizer.ggml.eos_token_id"]?.intValue
            // transformers builds bias parameters from flags: a model with biases must say so,
            // or they are left out of the model it builds.
            var hfConfig = config
            let parts = Set(source.tensors.compactMap { t -> LayerTensor? in
                if case let .layer(_, part)? = arch.role(ggufName: t.name) { return part }
                return nil
            })
            if !parts.isDisjoint(with: [.attnQBias, .attnOutputBias]) { hfConfig.attentionBias = true }
            if !parts.isDisjoint(with: [.mlpUpBias, .mlpDownBias]) { hfConfig.mlpBias = true }
            if arch.hfStatesQueryScale, hfConfig.queryPreAttnScalar == nil,
               let spec = try? arch.spec(config, format: .gguf, ropeFactors: nil, path: source.path) {
                // The scale llama.cpp uses, as the scalar whose inverse square root it is.
                hfConfig.queryPreAttnScalar = (1 / Double(spec.attentionScale * spec.attentionScale)).rounded()
            }
            if arch.ggufName == "phi3", hfConfig.ropeScaling?.shortFactor != nil,
               let d = hfConfig.headDim, let h = hfConfig.hiddenSize, let n = hfConfig.numAttentionHeads, n > 0, h / n != d {
                // transformers' Phi3Config sizes the LongRoPE factors by hidden_size / heads; its
                // model reads head_dim. A width-pruned Phi-3 is a valid model that this check refuses.
                warnings.append("head_dim \(d) differs from hidden_size / num_attention_heads = \(h / n): transformers' Phi3Config (5.x) refuses its LongRoPE factors on load although Phi3ForCausalLM would run it; llama.cpp and ckpt read it")
            }
            extraFiles.append(("config.json", hfConfig.hfConfigJSON(architecture: arch, tiedEmbeddings: tied, torchDType: torchDType, bosTokenID: bos, eosTokenID: eos,
                                                                      padTokenID: source.metadata["tokenizer.ggml.padding_token_id"]?.intValue)))
            var g = JSONWriter(pretty: true)
            g.beginObject()
            if let bos { g.int(bos, key: "bos_token_id") }
            if let eos { g.int(eos, key: "eos_token_id") }
            g.endObject()
            extraFiles.append(("generation_config.json", Array((g.text + "\n").utf8)))
            do {
                if let tokenizer = try TokenizerFiles(gguf: source.metadata) {
                    try tokenizer.checkConvertibleToHF()
                    extraFiles.append(("tokenizer.json", tokenizer.tokenizerJSON()))
                    extraFiles.append(("tokenizer_config.json", tokenizer.tokenizerConfigJSON(contextLength: config.maxPositionEmbeddings)))
                }
            } catch let e as TokenizerFiles.Unsupported {
                warnings.append("tokenizer not converted: \(e.description); copy the tokenizer files from the original HF model")
            }
        case (.safetensors, .safetensors):
            // Resharding: carry config, tokenizer and other small files along.
            let dir = try FileSystem.checkpointDirectory(source.path)
            guard options.includeSideFiles else { break }
            for name in try FileSystem.list(directory: dir)
            where !name.hasSuffix(".safetensors") && !name.hasSuffix(".safetensors.index.json") && !name.hasPrefix(".") {
                let p = FileSystem.join(dir, name)
                if try FileSystem.kind(of: p) == .file { sideFilePaths.append((name, p)) }
            }
        case (.safetensors, .gguf):
            if let arch = architecture {
                outputMetadata = config.ggufMetadata(architecture: arch)
            }
            outputMetadata.append(MetadataEntry(key: "general.quantization_version", value: .uint32(2)))
            let dir = try FileSystem.checkpointDirectory(source.path)
            do {
                if var tokenizer = try TokenizerFiles(hfDirectory: dir) {
                    let embedRows = source.tensors.first { architecture?.role(hfName: $0.name) == .embed }?.shape.first
                    tokenizer.pad(to: embedRows ?? config.vocabSize ?? 0)
                    outputMetadata += tokenizer.ggufMetadata()
                } else {
                    warnings.append("no tokenizer.json beside the model: the GGUF has no tokenizer, which llama.cpp needs")
                }
            } catch let e as TokenizerFiles.Unsupported {
                warnings.append("tokenizer not converted: \(e.description); llama.cpp needs one to load the model")
            }
        case (.gguf, .gguf):
            outputMetadata = options.keepSplitMetadata ? source.metadata : source.metadata.filter { !$0.key.hasPrefix("split.") }
        }
    }

    /// Runs the conversion. `progress` receives (tensors done, bytes of source read).
    package func run(progress: (Int, Int) -> Void = { _, _ in },
                    beforePublish: (CheckpointWriter) throws -> Void = { _ in }) throws -> ConversionSummary {
        let start = monotonicSeconds()
        let layout: OutputLayout
        switch options.target {
        case .gguf:
            layout = .gguf(path: output, metadata: outputMetadata)
        case .safetensors:
            // Safetensors to safetensors keeps the source's __metadata__; otherwise HF's usual one.
            let kept = source.format == .safetensors ? source.metadata.compactMap { e in e.value.stringValue.map { (e.key, $0) } } : []
            var metadata = kept.isEmpty ? [("format", "pt")] : kept
            if let extra = options.edit?.safetensorsMetadata {
                let keys = Set(extra.map(\.0))
                metadata = metadata.filter { !keys.contains($0.0) } + extra
            }
            if output.hasSuffix(".safetensors") {
                if !extraFiles.isEmpty || !sideFilePaths.isEmpty {
                    warnings.append("a single .safetensors file has no room for \((extraFiles.map(\.0) + sideFilePaths.map(\.0)).joined(separator: ", ")): write to a directory to keep them")
                    extraFiles = []
                    sideFilePaths = []
                }
                layout = .safetensorsFile(path: output, metadata: metadata)
            } else {
                layout = .safetensorsDirectory(path: output, shardSize: options.shardSize, metadata: metadata)
            }
        }
        let writer = try CheckpointWriter(layout: layout, tensors: jobs.map(\.plan), overwrite: options.overwrite)
        for (name, bytes) in extraFiles { try writer.addFile(named: name, contents: bytes) }
        for (name, path) in sideFilePaths { try writer.addFile(named: name, copying: path) }
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: Self.bufferElements)
        defer { buffer.deallocate() }
        let encoded = UnsafeMutableRawPointer.allocate(byteCount: Self.bufferElements * 4, alignment: 64)
        defer { encoded.deallocate() }
        var summary = ConversionSummary()
        for (i, job) in jobs.enumerated() {
            try convert(job, writer: writer, buffer: buffer, encoded: encoded)
            for member in job.stacked {
                try convert(Job(source: member.view, plan: job.plan, rowMap: member.rowMap, columns: member.columns, offset: job.offset),
                            writer: writer, buffer: buffer, encoded: encoded)
                summary.bytesRead += member.view.byteCount
            }
            CrashPoint.hit("tensor \(job.plan.name) written")
            summary.bytesRead += job.source.byteCount
            summary.bytesWritten += job.plan.byteCount
            progress(i + 1, summary.bytesRead)
        }
        try writer.prepare()
        try beforePublish(writer)
        try writer.publish()
        summary.tensors = jobs.count
        summary.seconds = monotonicSeconds() - start
        summary.outputFiles = writer.outputFiles
        summary.warnings = warnings
        return summary
    }

    private func convert(_ job: Job, writer: CheckpointWriter, buffer: UnsafeMutablePointer<Float>, encoded: UnsafeMutableRawPointer) throws {
        let t = job.source
        if let v = job.values {
            // New contents: encode them a block of rows at a time.
            let rowLength = max(t.rowLength, 1)
            let rowsPerChunk = max(1, Self.bufferElements / rowLength)
            var row = 0
            while row < t.rowCount {
                let end = min(t.rowCount, row + rowsPerChunk)
                let bytes = try Self.encode(v.pointer + row * rowLength, count: (end - row) * rowLength, as: job.plan.dtype, into: encoded)
                try writer.write(job.plan.name, UnsafeRawBufferPointer(start: encoded, count: bytes))
                v.done?((row * rowLength)..<(end * rowLength))
                row = end
            }
            return
        }
        defer { try? t.file.advise(.dontNeed, range: t.offset..<(t.offset + t.byteCount)) }
        try? t.file.advise(.sequential, range: t.offset..<(t.offset + t.byteCount))
        // Whole rows kept, same encoding: copy the kept rows' bytes (whole quantization
        // blocks), a run of consecutive rows at a time.
        if let map = job.rowMap, job.columns == nil, job.offset == 0, t.shape.count == 2, Self.sameEncoding(t.dtype, job.plan.dtype) {
            let rowBytes = t.byteCount / max(t.rowCount, 1)
            var r = 0
            while r < map.count {
                var e = r + 1
                while e < map.count && map[e] == map[e - 1] + 1 { e += 1 }
                try writer.copy(job.plan.name, from: t.file, sourceOffset: t.offset + map[r] * rowBytes, count: (e - r) * rowBytes)
                r = e
            }
            return
        }
        // Same bytes in and out: the kernel copies them file to file.
        if job.rowMap == nil && job.columns == nil && job.offset == 0 && Self.sameEncoding(t.dtype, job.plan.dtype) {
            if t.byteCount > 0 {
                try writer.copy(job.plan.name, from: t.file, sourceOffset: t.offset, count: t.byteCount)
            }
            return
        }
        guard TensorDecoder.canDecode(t.dtype) else {
            throw CheckpointError.unsupported(path: t.file.path, reason: "tensor '\(t.name)': no decoder for \(t.dtype.name) yet")
        }
        guard t.elementCount > 0 else { return }
        if let cols = job.columns, t.shape.count <= 1 {
            // A vector (norm, bias): keep the selected elements.
            guard t.elementCount <= Self.bufferElements else {
                throw CheckpointError.unsupported(path: t.file.path, reason: "tensor '\(t.name)': too long to select from")
            }
            let src = encoded.assumingMemoryBound(to: Float.self)
            try TensorDecoder.decodeRows(t, rows: 0..<1, into: src)
            for (k, c) in cols.enumerated() { buffer[k] = src[c] + job.offset }
            let bytes = try Self.encode(buffer, count: cols.count, as: job.plan.dtype, into: encoded)
            try writer.write(job.plan.name, UnsafeRawBufferPointer(start: encoded, count: bytes))
            return
        }
        if let map = job.rowMap, t.shape.count == 1 {
            // A bias: its elements are the "rows" to reorder.
            guard t.elementCount <= Self.bufferElements else {
                throw CheckpointError.unsupported(path: t.file.path, reason: "tensor '\(t.name)': too long to reorder")
            }
            try TensorDecoder.decodeRows(t, rows: 0..<1, into: encoded.assumingMemoryBound(to: Float.self))
            let src = encoded.assumingMemoryBound(to: Float.self)
            for k in 0..<t.elementCount { buffer[k] = src[map[k]] + job.offset }
            let bytes = try Self.encode(buffer, count: t.elementCount, as: job.plan.dtype, into: encoded)
            try writer.write(job.plan.name, UnsafeRawBufferPointer(start: encoded, count: bytes))
            return
        }
        let rowLength = max(t.rowLength, 1)
        let rows = job.rowMap?.count ?? t.rowCount
        guard rowLength <= Self.bufferElements else {
            throw CheckpointError.unsupported(path: t.file.path, reason: "tensor '\(t.name)': rows of \(rowLength) elements are longer than the conversion buffer")
        }
        let rowsPerChunk = max(1, Self.bufferElements / rowLength)
        var row = 0
        while row < rows {
            let end = min(rows, row + rowsPerChunk)
            if let map = job.rowMap {
                for r in row..<end {
                    try TensorDecoder.decodeRows(t, rows: map[r]..<(map[r] + 1), into: buffer + (r - row) * rowLength)
                }
            } else {
                try TensorDecoder.decodeRows(t, rows: row..<end, into: buffer)
                // Drop the source pages just decoded: resident memory stays one buffer
                // even for a 1.5 GB embedding.
                let rowBytes = t.byteCount / rows
                try? t.file.advise(.dontNeed, range: (t.offset + row * rowBytes)..<(t.offset + end * rowBytes))
            }
            var n = (end - row) * rowLength
            if let cols = job.columns {
                // Keep the selected columns of each row, compacting in place (ascending).
                for r in 0..<(end - row) {
                    let src = buffer + r * rowLength, dst = buffer + r * cols.count
                    for (k, c) in cols.enumerated() { dst[k] = src[c] }
                }
                n = (end - row) * cols.count
            }
            if job.offset != 0 {
                for k in 0..<n { buffer[k] += job.offset }
            }
            let bytes = try Self.encode(buffer, count: n, as: job.plan.dtype, into: encoded)
            try writer.write(job.plan.name, UnsafeRawBufferPointer(start: encoded, count: bytes))
            row = end
        }
    }

    static func sameEncoding(_ a: TensorDType, _ b: TensorDType) -> Bool {
        a.name == b.name && a.name != "BOOL"
    }

    /// Encodes `n` floats as `dtype` into `out`; returns the byte count.
    package static func encode(_ x: UnsafePointer<Float>, count n: Int, as dtype: TensorDType, into out: UnsafeMutableRawPointer) throws -> Int {
        switch dtype.name {
        case "F32":
            out.copyMemory(from: x, byteCount: n * 4)
            return n * 4
        case "F16": ckpt_quant_f16(x, out, Int64(n)); return n * 2
        case "BF16": ckpt_quant_bf16(x, out, Int64(n)); return n * 2
        case "Q8_0": ckpt_quant_q8_0(x, out, Int64(n / 32)); return n / 32 * 34
        case "Q4_0": ckpt_quant_q4_0(x, out, Int64(n / 32)); return n / 32 * 18
        case "Q4_1": ckpt_quant_q4_1(x, out, Int64(n / 32)); return n / 32 * 20
        case "Q5_0": ckpt_quant_q5_0(x, out, Int64(n / 32)); return n / 32 * 22
        case "Q5_1": ckpt_quant_q5_1(x, out, Int64(n / 32)); return n / 32 * 24
        case "Q4_K": ckpt_quant_q4_k(x, out, Int64(n / 256)); return n / 256 * 144
        case "Q5_K": ckpt_quant_q5_k(x, out, Int64(n / 256)); return n / 256 * 176
        case "Q6_K": ckpt_quant_q6_k(x, out, Int64(n / 256)); return n / 256 * 210
        default:
            throw CheckpointError.unsupported(path: "(output)", reason: "no encoder for \(dtype.name) yet")
        }
    }
}
