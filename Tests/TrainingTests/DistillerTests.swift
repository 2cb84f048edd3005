import Basics
import CKernels
import CheckpointIO
import Conversion
import LogitCache
@testable import Training
import Models
import TensorMath
import TestSupport
import XCTest

/// Distillation end to end on the tiny llama: a damaged copy of the teacher learns it
/// back from a cache; a resumed run ends bit-identical; the written student loads.
final class DistillerTests: XCTestCase {
    static let teacherPath = fixturesPath + "/engine/tiny-llama.gguf"

    func makeCache(_ dir: String, encoding: LogitEncoding) throws -> LogitCacheReader {
        let model = try DecoderModel(path: Self.teacherPath)
        let tokenizer = try Tokenizers.forModel(path: Self.teacherPath)
        let bytes = try FileSystem.readFile(fixturesPath + "/logits/text.txt")
        let text = TeacherText(tokens: tokenizer.encode(bytes: bytes, special: false), length: 32, bos: nil, identity: "text")
        let path = dir + "/teacher-\(encoding.name).cache"
        _ = try TeacherPass.build(stream: LayerStream(model: model), tokenizer: tokenizer, text: text,
                                  settings: TeacherPass.Settings(encoding: encoding, sequencesPerChunk: 4, batch: 4), output: path)
        return try LogitCacheReader(path: path)
    }

    /// The teacher's weights with every matrix scaled by noise: a student that must relearn.
    func damagedStudent(residence: StateResidence = .memory, recompute: Bool = false) throws -> (DecoderModel, TrainableDecoder) {
        let model = try DecoderModel(path: Self.teacherPath)
        let s = try TrainableDecoder(model: model, residence: residence, recomputeActivations: recompute)
        var rng = SplitMix64(seed: 99)
        for slot in s.slots where slot.shape.count == 2 {
            for i in slot.offset..<(slot.offset + slot.count) {
                s.weights[i] *= 1 + (Float(Int(rng.next() % 1001)) / 1000 - 0.5) * 0.8
            }
        }
        return (model, s)
    }

    var eightBit = false

    func settings(steps: Int) -> Distiller.Settings {
        var s = Distiller.Settings(steps: steps, schedule: LearningRateSchedule(peak: 3e-3, minimum: 3e-4, warmup: 2, steps: steps))
        s.batch = 3
        s.seed = 5
        s.eightBitState = eightBit
        return s
    }

    func testStudentLearnsTheTeacherBackFromBothEncodings() throws {
        let dir = makeTemporaryDirectory()
        for encoding in [LogitEncoding.topK(k: 16), .sample(draws: 64, seed: 1)] {
            let cache = try makeCache(dir, encoding: encoding)
            let (_, student) = try damagedStudent()
            let d = try Distiller(student: student, cache: cache, settings: settings(steps: 40))
            var losses: [Double] = []
            for _ in 0..<40 {
                let r = try d.step()
                XCTAssertFalse(r.skipped)
                losses.append(r.distillationLoss)
            }
            let start = losses.prefix(5).reduce(0, +) / 5, end = losses.suffix(5).reduce(0, +) / 5
            XCTAssertLessThan(end, 0.5 * start, "\(encoding.name): \(losses.map { ($0 * 1000).rounded() / 1000 })")
        }
    }

    func testResumedRunEndsBitIdenticalWithEightBitState() throws {
        eightBit = true
        try testResumedRunEndsBitIdentical()
    }

    func testEightBitStateTrainsAsWellAsF32() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .topK(k: 16))
        var ends: [Double] = []
        var bytes: [Int] = []
        for eight in [false, true] {
            eightBit = eight
            let (_, student) = try damagedStudent()
            let d = try Distiller(student: student, cache: cache, settings: settings(steps: 40))
            var losses: [Double] = []
            for _ in 0..<40 { losses.append(try d.step().distillationLoss) }
            ends.append(losses.suffix(8).reduce(0, +) / 8)
            bytes.append(d.optimizer.stateBytes)
        }
        XCTAssertLessThan(abs(ends[1] - ends[0]), 0.05 * ends[0], "f32 state \(ends[0]), 8-bit state \(ends[1])")
        XCTAssertLessThan(Double(bytes[1]), 0.26 * Double(bytes[0]))
    }

    /// The run policy in-process: held-out perplexity at the start, every `evalEvery`
    /// steps and at the end; one CSV line per step; checkpoints at the cadence but not at
    /// the last step; the tokens counted.
    func testRunFollowsItsPolicy() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .topK(k: 8))
        let (_, student) = try damagedStudent()
        var s = settings(steps: 7)
        s.checkpointEvery = 3
        let d = try Distiller(student: student, cache: cache, settings: s)
        var policy = TrainingRunPolicy()
        let tokenizer = try Tokenizers.forModel(path: Self.teacherPath)
        let text = TeacherText(tokens: tokenizer.encode(bytes: try FileSystem.readFile(fixturesPath + "/logits/text.txt"), special: false),
                               length: 32, bos: nil, identity: "")
        policy.heldOut = [text.sequence(text.sequenceCount - 1)]
        policy.evalEvery = 2
        policy.checkpointDirectory = dir + "/ck"
        policy.logPath = dir + "/log.csv"
        try FileSystem.makeDirectory(dir + "/ck")
        var events: [String] = []
        let run = try d.run(policy) { e in
            switch e {
            case let .evaluationPoint(step): events.append("point \(step)")
            case let .heldOut(step, _): events.append("eval \(step)")
            case let .skipped(r): events.append("skip \(r.step)")
            case let .step(r, _): events.append("step \(r.step)")
            }
        }
        XCTAssertEqual(events, ["point 0", "eval 0", "step 1", "point 2", "eval 2", "step 2", "step 3", "point 4", "eval 4", "step 4", "step 5",
                                "point 6", "eval 6", "step 6", "point 7", "eval 7", "step 7"])
        XCTAssertEqual(run.heldOut.map(\.step), [0, 2, 4, 6, 7])
        XCTAssertLessThan(run.heldOut.last!.perplexity, run.heldOut.first!.perplexity, "the damaged student improves")
        XCTAssertEqual(run.loss.map(\.step), Array(1...7))
        XCTAssertEqual(try FileSystem.list(directory: dir + "/ck").sorted(), ["step-00000003", "step-00000006"])
        let lines = String(decoding: try FileSystem.readFile(dir + "/log.csv"), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 8)
        XCTAssertTrue(lines[0].hasPrefix("step,tokens,kd_loss"))
        let logged = lines.dropFirst().map { Int($0.split(separator: ",")[1])! }
        XCTAssertEqual(run.tokens, logged.reduce(0, +), "the summary counts what the log says each step saw")
        XCTAssertTrue(logged.allSatisfy { $0 > 0 && $0 <= 3 * cache.header.sequenceLength }, "\(logged)")
        XCTAssertFalse(lines[2].split(separator: ",", omittingEmptySubsequences: false)[8].isEmpty, "held-out ppl logged at step 2")
        XCTAssertTrue(lines[3].split(separator: ",", omittingEmptySubsequences: false)[8].isEmpty, "and not at step 3")
    }

    /// A learning rate that blows the weights up skips steps, and past the tolerance the
    /// run stops with an error instead of writing a broken student.
    func testDivergedRunStops() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .topK(k: 8))
        let (_, student) = try damagedStudent()
        var s = settings(steps: 30)
        s.schedule = LearningRateSchedule(peak: 1e30, minimum: 1e30, warmup: 0, steps: 30)
        let d = try Distiller(student: student, cache: cache, settings: s)
        var skipped = 0
        XCTAssertThrowsError(try d.run(TrainingRunPolicy()) { if case .skipped = $0 { skipped += 1 } }) { e in
            guard let diverged = e as? TrainingDiverged else { return XCTFail("\(e)") }
            XCTAssertEqual(diverged.skipped, 11)
            XCTAssertEqual(diverged.exitCode, .dataError)
        }
        XCTAssertEqual(skipped, 11)
    }

    func testResumedRunEndsBitIdentical() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .topK(k: 8))
        let (_, a) = try damagedStudent()
        let straight = try Distiller(student: a, cache: cache, settings: settings(steps: 10))
        for _ in 0..<10 { _ = try straight.step() }

        let (_, b) = try damagedStudent()
        let first = try Distiller(student: b, cache: cache, settings: settings(steps: 10))
        for _ in 0..<4 { _ = try first.step() }
        try first.saveCheckpoint(in: dir + "/ck")
        for _ in 0..<2 { _ = try first.step() }  // work lost to the "crash"
        // A torn newer checkpoint is skipped.
        try FileSystem.makeDirectory(dir + "/ck/step-00000006")
        writeFile(dir + "/ck/step-00000006/state.json", Array("{".utf8))

        let (_, c) = try damagedStudent()
        let resumed = try Distiller(student: c, cache: cache, settings: settings(steps: 10))
        let r = try XCTUnwrap(resumed.resume(from: dir + "/ck"))
        XCTAssertEqual(r.step, 4)
        XCTAssertEqual(r.skipped.count, 1)
        while resumed.optimizer.step < 10 { _ = try resumed.step() }
        XCTAssertEqual(resumed.position, straight.position)
        XCTAssertTrue(memcmp(a.weights.pointer, c.weights.pointer, a.weights.count * 4) == 0, "weights differ after resuming")
        for (x, y) in zip(straight.optimizer.state, resumed.optimizer.state) {
            XCTAssertTrue(memcmp(x.bytes.baseAddress!, y.bytes.baseAddress!, x.bytes.count) == 0, x.name)
        }
        // Other settings do not resume from it.
        var other = settings(steps: 10)
        other.seed = 6
        let (_, e) = try damagedStudent()
        let mismatched = try Distiller(student: e, cache: cache, settings: other)
        XCTAssertEqual(try mismatched.resume(from: dir + "/ck")?.step, 0)
    }

    /// Weights, gradients and moments streamed from files, activations recomputed, the LM
    /// head in vocabulary slices: the same numbers as everything in memory, bit for bit,
    /// and a checkpoint written by one resumes in the other.
    func testStreamedStateAndRecomputedActivationsTrainBitIdentically() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .sample(draws: 32, seed: 3))
        for (eightBit, products) in [(false, TrainableDecoder.Products.f32), (true, .f32), (false, .int8)] {
            self.eightBit = eightBit
            let (_, a) = try damagedStudent()
            a.vocabSlice = 48  // several slices of the tiny vocabulary
            a.products = products
            let inMemory = try Distiller(student: a, cache: cache, settings: settings(steps: 6))
            for _ in 0..<6 { _ = try inMemory.step() }

            let work = dir + "/live-\(eightBit)-\(products)"
            try FileSystem.makeDirectory(work)
            let (_, b) = try damagedStudent(residence: .files(directory: work), recompute: true)
            b.vocabSlice = 48
            b.products = products
            XCTAssertTrue(b.weights.isStreamed)
            let streamed = try Distiller(student: b, cache: cache, settings: settings(steps: 6), stateResidence: .files(directory: work))
            for _ in 0..<3 { _ = try streamed.step() }
            try streamed.saveCheckpoint(in: dir + "/ck-\(eightBit)-\(products)")
            for _ in 0..<3 { _ = try streamed.step() }
            XCTAssertTrue(memcmp(a.weights.pointer, b.weights.pointer, a.weights.count * 4) == 0, "streamed weights differ (8-bit state: \(eightBit), \(products) products)")
            for (x, y) in zip(inMemory.optimizer.state, streamed.optimizer.state) {
                XCTAssertTrue(memcmp(x.raw, y.raw, x.byteCount) == 0, x.name)
            }
            XCTAssertEqual(try FileSystem.list(directory: work).sorted(), (["grads.f32", "weights.f32"] + streamed.optimizer.state.map(\.name)).sorted())

            // The streamed run's checkpoint, resumed in memory, ends where both did.
            let (_, c) = try damagedStudent()
            c.vocabSlice = 48
            c.products = products
            let resumed = try Distiller(student: c, cache: cache, settings: settings(steps: 6))
            XCTAssertEqual(try resumed.resume(from: dir + "/ck-\(eightBit)-\(products)")?.step, 3)
            for _ in 0..<3 { _ = try resumed.step() }
            XCTAssertTrue(memcmp(a.weights.pointer, c.weights.pointer, a.weights.count * 4) == 0, "resumed weights differ")
        }
    }

    /// The plan takes the fastest arrangement that fits: a budget between the estimates
    /// picks recomputation, and one below the leanest names its minimum.
    func testMemoryPlanPicksTheFastestArrangementThatFits() throws {
        let model = try DecoderModel(path: Self.teacherPath)
        let slots = try TrainableDecoder.slots(of: model)
        func plan(_ budget: Int?) throws -> MemoryPlan {
            try MemoryPlan.choose(budget: budget, spec: model.spec, slots: slots, tokens: 2048, logitRows: 64, eightBitState: false,
                                  baseline: 10 << 20, chunkBytes: 1 << 20)
        }
        func estimate(_ stream: Bool, _ recompute: Bool) -> Int {
            MemoryPlan.estimate(spec: model.spec, slots: slots, tokens: 2048, logitRows: 64, eightBitState: false, baseline: 10 << 20,
                                chunkBytes: 1 << 20, streamState: stream, recompute: recompute).total
        }
        let all = estimate(false, false), recompute = estimate(false, true)
        XCTAssertGreaterThanOrEqual(all - recompute, (model.spec.layers - 1) * TrainableDecoder.LayerActivations.bytes(spec: model.spec, tokens: 2048),
                                    "every layer's activations kept")
        XCTAssertFalse(try plan(nil).recomputeActivations)
        XCTAssertFalse(try plan(all).recomputeActivations)
        let middle = try plan(all - 1)
        XCTAssertTrue(middle.recomputeActivations)
        XCTAssertFalse(middle.streamState, "the tiny model's state is smaller than a streamed slice")
        let minimum = [all, recompute, estimate(true, false), estimate(true, true)].min()!
        XCTAssertThrowsError(try plan(minimum - 1)) { e in
            XCTAssertTrue("\(e)".contains("at least") && "\(e)".contains("activations"), "\(e)")
        }
        XCTAssertNoThrow(try plan(minimum))
    }

    func testNonFiniteStepIsSkipped() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .topK(k: 8))
        let (_, s) = try damagedStudent()
        let d = try Distiller(student: s, cache: cache, settings: settings(steps: 5))
        s.weights[s.slots.last!.offset] = .nan
        let r = try d.step()
        XCTAssertTrue(r.skipped)
        XCTAssertEqual(d.optimizer.step, 0)
    }

    func testWrittenStudentLoadsWithTheTrainedWeights() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .topK(k: 8))
        let (model, s) = try damagedStudent()
        let d = try Distiller(student: s, cache: cache, settings: settings(steps: 3))
        for _ in 0..<3 { _ = try d.step() }
        _ = try StudentWriter.write(s, source: model.checkpoint, to: dir + "/student.gguf", dtype: .f32)
        let back = try TrainableDecoder(model: DecoderModel(path: dir + "/student.gguf"))
        XCTAssertEqual(back.parameterCount, s.parameterCount)
        XCTAssertTrue(memcmp(back.weights.pointer, s.weights.pointer, s.weights.count * 4) == 0)
        // Default f16: within f16 rounding, and the tokenizer came along.
        _ = try StudentWriter.write(s, source: model.checkpoint, to: dir + "/student-f16.gguf")
        let half = try DecoderModel(path: dir + "/student-f16.gguf")
        XCTAssertEqual(half.checkpoint.tensors.first { $0.name == "blk.0.ffn_up.weight" }?.dtype.name, "F16")
        XCTAssertEqual(half.checkpoint.tensors.first { $0.name == "blk.0.attn_norm.weight" }?.dtype.name, "F32")
        XCTAssertEqual(try Tokenizers.forModel(path: dir + "/student-f16.gguf").files, try Tokenizers.forModel(path: Self.teacherPath).files)
    }

    func testSafetensorsStudentWritesBackAsSafetensors() throws {
        let dir = makeTemporaryDirectory()
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-llama-hf")
        let s = try TrainableDecoder(model: model)
        for i in 0..<s.weights.count { s.weights[i] += 1e-3 * Float(i % 7) }
        _ = try StudentWriter.write(s, source: model.checkpoint, to: dir + "/out", dtype: .f32)
        XCTAssertEqual(try FileSystem.kind(of: dir + "/out/config.json"), .file)
        let back = try TrainableDecoder(model: DecoderModel(path: dir + "/out"))
        XCTAssertTrue(memcmp(back.weights.pointer, s.weights.pointer, s.weights.count * 4) == 0)
        _ = try StudentWriter.write(s, source: model.checkpoint, to: dir + "/bf16")
        XCTAssertEqual(try DecoderModel(path: dir + "/bf16").checkpoint.tensors.map(\.dtype.name).filter { $0 != "BF16" }, [])
    }

    /// gemma in HF form stores norm weights w for x·(1 + w): the student trains on 1 + w
    /// (its forward equals the GGUF one's) and writes w back.
    func testGemmaStudentInHFFormKeepsItsNormOffset() throws {
        let dir = makeTemporaryDirectory()
        var o = ConversionOptions(target: .safetensors)
        o.dtype = .f32
        _ = try Converter(source: try openCheckpoint(path: fixturesPath + "/engine/tiny-gemma3.gguf"), output: dir + "/hf", options: o).run()
        let gguf = try TrainableDecoder(model: DecoderModel(path: fixturesPath + "/engine/tiny-gemma3.gguf"))
        let hfModel = try DecoderModel(path: dir + "/hf")
        let hf = try TrainableDecoder(model: hfModel)
        XCTAssertEqual(hf.normOffset, 1)
        let tokens: [Int32] = [2, 40, 41, 99, 7, 12, 200, 3, 3, 18]
        func logits(_ s: TrainableDecoder) -> [Float] {
            var out = [Float]()
            _ = s.forwardBackward(tokens, backward: false) { _, n, l, _ in out += UnsafeBufferPointer(start: l, count: n * s.spec.vocab); return 0 }
            return out
        }
        let a = logits(gguf), b = logits(hf)
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-3)
        _ = try StudentWriter.write(hf, source: hfModel.checkpoint, to: dir + "/out", dtype: .f32)
        let source = try openCheckpoint(path: dir + "/hf"), written = try openCheckpoint(path: dir + "/out")
        var norms = 0
        for t in source.tensors where t.name.contains("norm") {
            let u = try XCTUnwrap(written.tensors.first { $0.name == t.name })
            XCTAssertTrue(sameBytes(t.bytes, u.bytes), t.name)
            norms += 1
        }
        XCTAssertGreaterThan(norms, 4)
    }

    func testRefusesAnotherVocabularyAndReverseKLFromDraws() throws {
        let dir = makeTemporaryDirectory()
        let cache = try makeCache(dir, encoding: .sample(draws: 16, seed: 0))
        let (_, s) = try damagedStudent()
        var set = settings(steps: 2)
        set.loss = .reverseKL
        XCTAssertThrowsError(try Distiller(student: s, cache: cache, settings: set)) { XCTAssertTrue("\($0)".contains("topk"), "\($0)") }
    }
}
