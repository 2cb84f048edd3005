import Basics
import CKernels
import CheckpointIO
import LogitCache
import Models
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// Trains a student against a teacher-logit cache: batches of cached sequences, the
/// chosen distillation loss (plus optional cross-entropy on the tokens), AdamW on f32
/// master weights, checkpoints a crashed run resumes from bit for bit.
package final class Distiller {
    package struct Settings: Sendable {
        package var loss: KDLoss = .forwardKL
        package var temperature: Double = 1
        /// Weight of cross-entropy on the next tokens; the distillation loss gets 1 − this.
        package var crossEntropyWeight: Double = 0
        package var steps: Int
        /// Sequences per optimizer step.
        package var batch: Int = 4
        package var schedule: LearningRateSchedule
        package var clip: Double = 1
        package var weightDecay: Double = 0.1
        package var seed: UInt64 = 0
        package var checkpointEvery: Int = 0
        /// Keep AdamW's moments in 8 bits per value (blockwise, logarithmic codes).
        package var eightBitState = false
        /// An intermediate-state loss against a live teacher (nil: logits only).
        package var hidden: HiddenStateSettings?

        package init(steps: Int, schedule: LearningRateSchedule) {
            self.steps = steps
            self.schedule = schedule
        }

        /// What must match for a checkpoint to be resumed under these settings.
        var fingerprint: String {
            "\(loss.rawValue) T\(temperature) ce\(crossEntropyWeight) steps\(steps) batch\(batch) lr\(schedule.peak)/\(schedule.minimum)/\(schedule.warmup) clip\(clip) wd\(weightDecay) seed\(seed)\(eightBitState ? " state8" : "")\(hidden.map { " " + $0.fingerprint } ?? "")"
        }
    }

    /// One optimizer step, for the log.
    package struct StepRecord: Sendable {
        package var step: Int
        package var tokens: Int
        package var distillationLoss: Double
        package var crossEntropy: Double
        /// Mean hidden-state loss per position and pair (0 without one).
        package var hiddenLoss: Double = 0
        package var learningRate: Double
        package var gradientNorm: Double
        package var skipped: Bool
        package var seconds: Double
    }

    package enum Failure: UserFacingError, Sendable {
        case mismatch(String)
        case emptyCache(String)
        package var exitCode: ExitCode { .dataError }
        package var description: String {
            switch self {
            case let .mismatch(s): return s
            case let .emptyCache(p): return "\(p) holds no sequences to train on"
            }
        }
    }

    package let student: TrainableDecoder
    package let cache: LogitCacheReader
    package let settings: Settings
    package let optimizer: AdamW
    /// The hidden-state loss's projections and live teacher, when there is one.
    package let aligner: HiddenStateAligner?
    private let teacherStates: TeacherStates?
    private let losses: LossKernels
    /// Where the next sequence comes from: pass over the data, index into that pass's
    /// chunk order, sequence within the chunk.
    package private(set) var position = DataPosition()
    private var order: [Int] = []
    private var chunk: (index: Int, data: LogitChunk)?

    package struct DataPosition: Sendable, Equatable {
        package var epoch = 0
        package var chunkInOrder = 0
        package var sequenceInChunk = 0
    }

    /// `stateResidence` says where the optimizer's moments live (as the student's weights
    /// do, see `TrainableDecoder`); it changes memory, never the numbers.
    /// `teacher` runs live for the hidden-state loss (it must be the cache's teacher);
    /// `channels` maps the student's hidden channels to the teacher's when width was cut.
    package init(student: TrainableDecoder, cache: LogitCacheReader, settings: Settings, stateResidence: StateResidence = .memory,
                teacher: DecoderModel? = nil, channels: [Int]? = nil) throws {
        if student.spec.vocab != cache.header.vocab {
            throw Failure.mismatch("the student's vocabulary has \(student.spec.vocab) tokens, the cache's teacher \(cache.header.vocab): they must share a tokenizer")
        }
        if let why = settings.loss.refusal(for: cache.header.encoding) { throw Failure.mismatch(why) }
        if cache.sequenceCount == 0 { throw Failure.emptyCache(cache.path) }
        self.student = student
        self.cache = cache
        self.settings = settings
        optimizer = try AdamW(parameters: student.parameterCount, slots: student.slots, eightBit: settings.eightBitState, residence: stateResidence)
        if let h = settings.hidden {
            guard let teacher else { throw Failure.mismatch("the hidden-state loss needs the teacher model") }
            if teacher.identity != cache.header.teacherIdentity {
                throw Failure.mismatch("\(teacher.checkpoint.path) is not the teacher the cache was built from (\(teacher.identity), the cache's \(cache.header.teacherIdentity))")
            }
            for p in h.pairs where p.student >= student.spec.layers || p.teacher >= teacher.spec.layers {
                throw Failure.mismatch("hidden-state pair \(p) is out of range: the student has \(student.spec.layers) layers, the teacher \(teacher.spec.layers)")
            }
            aligner = try HiddenStateAligner(settings: h, studentWidth: student.spec.hidden, teacherWidth: teacher.spec.hidden, channels: channels)
            teacherStates = TeacherStates(model: teacher, layers: Array(Set(h.pairs.map(\.teacher))).sorted())
        } else {
            aligner = nil
            teacherStates = nil
        }
        optimizer.clip = settings.clip
        optimizer.weightDecay = Float(settings.weightDecay)
        losses = LossKernels(vocab: student.spec.vocab)
        order = Self.chunkOrder(chunks: cache.chunks.count, seed: settings.seed, epoch: 0)
    }

    /// Chunks in a shuffled order per pass; sequences within a chunk in order.
    static func chunkOrder(chunks: Int, seed: UInt64, epoch: Int) -> [Int] {
        var o = Array(0..<chunks)
        var rng = SplitMix64(seed: seed ^ (0x9E37_79B9_7F4A_7C15 &* UInt64(epoch + 1)))
        rng.shuffle(&o)
        return o
    }

    /// The next cached sequence: its chunk and index there. Advances the position.
    private func nextSequence() throws -> (LogitChunk, Int) {
        while true {
            if position.chunkInOrder >= order.count {
                position.epoch += 1
                position.chunkInOrder = 0
                position.sequenceInChunk = 0
                order = Self.chunkOrder(chunks: cache.chunks.count, seed: settings.seed, epoch: position.epoch)
            }
            let ci = order[position.chunkInOrder]
            if chunk?.index != ci { chunk = (ci, try cache.chunk(ci)) }
            let c = chunk!.data
            if position.sequenceInChunk < c.sequenceCount {
                let s = position.sequenceInChunk
                position.sequenceInChunk += 1
                return (c, s)
            }
            position.chunkInOrder += 1
            position.sequenceInChunk = 0
        }
    }

    /// Runs one optimizer step over `batch` sequences.
    package func step() throws -> StepRecord {
        let t0 = monotonicSeconds()
        let enc = cache.header.encoding
        var batch: [(tokens: [Int32], targets: KDTargets)] = []
        for _ in 0..<settings.batch {
            let (c, si) = try nextSequence()
            let start = c.sequenceStarts[si], n = c.sequenceLengths[si]
            var t = KDTargets()
            for r in start..<(start + n) { t.append(c, record: r, encoding: enc) }
            batch.append((Array(c.tokens[start..<(start + n)]), t))
        }
        let tokens = batch.reduce(0) { $0 + $1.tokens.count }
        let ceWeight = settings.crossEntropyWeight, kdWeight = 1 - ceWeight
        let kdScale = Float(kdWeight / Double(tokens)), ceScale = Float(ceWeight / Double(tokens))
        var kdTotal = 0.0, ceTotal = 0.0, hiddenTotal = 0.0
        student.zeroGrads()
        aligner?.grads.zero()
        let states = try teacherStates?.run(batch.map(\.tokens))
        let hiddenLayers = Set(settings.hidden?.pairs.map(\.student) ?? [])
        let hiddenScale = Float((settings.hidden?.weight ?? 0) / Double(tokens * max(settings.hidden?.pairs.count ?? 1, 1)))
        for (b, (seq, targets)) in batch.enumerated() {
            var hiddenHead: TrainableDecoder.HiddenHead?
            if let aligner, let states, let h = settings.hidden, let stateLayers = teacherStates?.layers {
                hiddenHead = { layer, hidden, grad in
                    var total = 0.0
                    for (k, p) in h.pairs.enumerated() where p.student == layer {
                        let target = states[b][stateLayers.firstIndex(of: p.teacher)!].pointer
                        total += aligner.loss(pair: k, hidden: hidden, target: target, rows: seq.count, scale: hiddenScale, grad: grad)
                    }
                    hiddenTotal += total
                    return h.weight * total
                }
            }
            _ = student.forwardBackward(seq, hiddenLayers: hiddenLayers, hidden: hiddenHead) { [losses, settings] r0, n, logits, grad in
                let sub = targets.rows(r0..<(r0 + n))
                var total = 0.0
                if kdWeight > 0 {
                    let l = losses.distillation(settings.loss, logits: logits, targets: sub, temperature: settings.temperature, scale: kdScale, grad: grad)
                    let s = l.reduce(0, +)
                    kdTotal += s
                    total += kdWeight * s
                }
                if ceWeight > 0 {
                    let l = losses.crossEntropy(logits: logits, labels: nextTokenLabels(seq, rows: r0..<(r0 + n)), scale: ceScale, grad: grad)
                    let s = l.reduce(0, +)
                    ceTotal += s
                    total += ceWeight * s
                }
                return total
            }
        }
        let s = optimizer.step + 1
        let lr = settings.schedule.rate(s)
        var outcome = AdamW.Outcome(gradientNorm: .nan, skipped: true)
        if kdTotal.isFinite && ceTotal.isFinite && hiddenTotal.isFinite {
            outcome = optimizer.update(student, lr: lr)
            if !outcome.skipped, let aligner { _ = aligner.optimizer.update(weights: aligner.weights, grads: aligner.grads, lr: lr) }
        }
        let labelled = max(tokens - batch.count, 1)
        return StepRecord(step: s, tokens: tokens, distillationLoss: kdTotal / Double(tokens), crossEntropy: ceTotal / Double(labelled),
                          hiddenLoss: hiddenTotal / Double(tokens * max(settings.hidden?.pairs.count ?? 1, 1)),
                          learningRate: lr, gradientNorm: outcome.gradientNorm, skipped: outcome.skipped, seconds: monotonicSeconds() - t0)
    }

    /// Mean negative log-likelihood per predicted token of held-out sequences (forward
    /// only, no gradients): exp of it is the perplexity.
    package func heldOutLoss(_ sequences: [[Int32]]) -> Double {
        var nll = 0.0, count = 0
        for seq in sequences where seq.count > 1 {
            nll += student.forwardBackward(seq, backward: false) { [losses] r0, n, logits, grad in
                losses.crossEntropy(logits: logits, labels: nextTokenLabels(seq, rows: r0..<(r0 + n)), scale: 0, grad: grad).reduce(0, +)
            }
            count += seq.count - 1
        }
        return count > 0 ? nll / Double(count) : .nan
    }

    // MARK: checkpoints

    /// What must match for a checkpoint to resume: the settings and how products run.
    private var runFingerprint: String { settings.fingerprint + (student.products == .f32 ? "" : " products \(student.products.rawValue)") }

    /// Everything a checkpoint holds besides the position: weights and optimizer state,
    /// and the hidden-state projections with theirs.
    private var checkpointArrays: [StateArray] {
        [student.weights] + optimizer.state + (aligner.map { [$0.weights] + $0.optimizer.state } ?? [])
    }

    /// Saves weights, optimizer state and the data position into `dir/step-N`, written
    /// beside it and renamed into place, then removes older checkpoints but the last.
    package func saveCheckpoint(in dir: String) throws {
        if try FileSystem.kind(of: dir) != .directory { try FileSystem.makeDirectory(dir) }
        let name = "step-\(String(repeating: "0", count: max(0, 8 - String(optimizer.step).count)))\(optimizer.step)"
        let final = FileSystem.join(dir, name)
        let temp = FileSystem.join(dir, ".\(name).tmp-\(getpid())")
        FileSystem.removeTree(temp)
        try FileSystem.makeDirectory(temp)
        var crcs: [String: UInt32] = [:]
        for array in checkpointArrays {
            let out = try OutputFile(creating: FileSystem.join(temp, array.name))
            var crc: UInt32 = 0, at = 0
            try array.forEachSlice { slice in
                try out.write(UnsafeRawBufferPointer(slice), at: at)
                crc = ckpt_crc32c(crc, slice.baseAddress, Int64(slice.count))
                at += slice.count
            }
            try out.sync()
            try out.close()
            crcs[array.name] = crc
        }
        var w = JSONWriter(pretty: true)
        w.beginObject()
        w.int(optimizer.step, key: "step")
        w.int(position.epoch, key: "epoch")
        w.int(position.chunkInOrder, key: "chunk_in_order")
        w.int(position.sequenceInChunk, key: "sequence_in_chunk")
        w.string(runFingerprint, key: "settings")
        w.string(cache.header.compatibilityKey.isEmpty ? "" : String(FNV1a64.hash(cache.header.compatibilityKey)), key: "cache")
        w.int(1, key: "format")
        w.int(student.parameterCount, key: "parameters")
        w.beginArray(key: "tensors")
        for slot in student.slots {
            w.beginObject()
            w.string(slot.name, key: "name")
            w.raw("[" + slot.shape.map(String.init).joined(separator: ",") + "]", key: "shape")
            w.int(slot.offset, key: "offset")
            w.int(slot.count, key: "count")
            if slot.isNorm && student.normOffset != 0 { w.double(Double(student.normOffset), key: "stored_offset") }
            w.endObject()
        }
        w.endArray()
        w.string(optimizer.eightBit ? "8bit" : "f32", key: "optimizer_state")
        if let h = settings.hidden {
            w.beginArray(key: "hidden_pairs")
            for p in h.pairs { w.raw("[\(p.student),\(p.teacher)]") }
            w.endArray()
            w.int(aligner?.teacherWidth ?? 0, key: "teacher_width")
        }
        w.beginObject(key: "crc32c")
        for (k, v) in crcs.sorted(by: { $0.key < $1.key }) { w.int(Int(v), key: k) }
        w.endObject()
        w.endObject()
        try FileSystem.writeNewFile(FileSystem.join(temp, "state.json"), Array(w.text.utf8))
        try FileSystem.syncDirectory(temp)
        FileSystem.removeTree(final)
        try FileSystem.rename(temp, final)
        try FileSystem.syncDirectory(dir)
        // Keep the newest two: a torn newest one falls back to the one before.
        let all = try FileSystem.list(directory: dir).filter { $0.hasPrefix("step-") }.sorted()
        for old in all.dropLast(2) { FileSystem.removeTree(FileSystem.join(dir, old)) }
    }

    /// Loads the newest checkpoint in `dir` that is whole and made with these settings;
    /// returns its step and a note for every newer one skipped, or nil when there is none.
    package func resume(from dir: String) throws -> (step: Int, skipped: [String])? {
        guard try FileSystem.kind(of: dir) == .directory else { return nil }
        var skipped: [String] = []
        for name in try FileSystem.list(directory: dir).filter({ $0.hasPrefix("step-") }).sorted().reversed() {
            let path = FileSystem.join(dir, name)
            do {
                try load(path)
                return (optimizer.step, skipped)
            } catch {
                skipped.append("\(path): \(error)")
            }
        }
        return skipped.isEmpty ? nil : (0, skipped)
    }

    private func load(_ path: String) throws {
        let state: JSONValue
        do { state = try JSONParser.parse(FileSystem.readFile(FileSystem.join(path, "state.json"))) } catch let e as JSONError {
            throw CheckpointError.malformed(path: path, reason: "state.json: \(e)")
        }
        guard state["settings"]?.stringValue == runFingerprint else {
            throw Failure.mismatch("made with other settings (\(state["settings"]?.stringValue ?? "?"))")
        }
        guard state["cache"]?.stringValue == String(FNV1a64.hash(cache.header.compatibilityKey)) else {
            throw Failure.mismatch("made from another cache")
        }
        guard state["parameters"]?.nonNegativeInt == student.parameterCount, let step = state["step"]?.nonNegativeInt,
              let epoch = state["epoch"]?.nonNegativeInt, let ci = state["chunk_in_order"]?.nonNegativeInt,
              let si = state["sequence_in_chunk"]?.nonNegativeInt else {
            throw CheckpointError.malformed(path: path, reason: "state.json is incomplete")
        }
        // Every file checked first, a slice at a time; only then is the live state overwritten.
        var files: [(StateArray, MappedFile)] = []
        for array in checkpointArrays {
            let file = try MappedFile(path: FileSystem.join(path, array.name))
            guard file.size == array.byteCount else {
                throw CheckpointError.malformed(path: path, reason: "\(array.name) has \(file.size) bytes, expected \(array.byteCount)")
            }
            var crc: UInt32 = 0
            for at in stride(from: 0, to: file.size, by: StateArray.slice) {
                let r = at..<min(file.size, at + StateArray.slice)
                crc = ckpt_crc32c(crc, file.bytes(in: r).baseAddress, Int64(r.count))
                try? file.advise(.dontNeed, range: r)
            }
            guard state["crc32c"]?[array.name]?.nonNegativeInt == Int(crc) else {
                throw CheckpointError.malformed(path: path, reason: "\(array.name) fails its checksum")
            }
            files.append((array, file))
        }
        for (array, file) in files {
            var at = 0
            array.forEachSlice { slice in
                let r = at..<(at + slice.count)
                slice.copyMemory(from: file.bytes(in: r))
                try? file.advise(.dontNeed, range: r)
                at += slice.count
            }
        }
        optimizer.setStep(step)
        aligner?.optimizer.setStep(step)
        student.weightsChanged()
        position = DataPosition(epoch: epoch, chunkInOrder: ci, sequenceInChunk: si)
        order = Self.chunkOrder(chunks: cache.chunks.count, seed: settings.seed, epoch: epoch)
        chunk = nil
    }
}

extension FNV1a64 {
    static func hash(_ s: String) -> UInt64 {
        var h = FNV1a64()
        h.add(s)
        return h.value
    }
}
