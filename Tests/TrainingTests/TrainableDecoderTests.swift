import Basics
import CKernels
import CheckpointIO
import LogitCache
@testable import Training
import Models
import TensorMath
import TestSupport
import XCTest

/// The whole student's backward pass against finite differences, and its forward pass
/// against the inference engine, on the tiny fixtures of every architecture: llama (GGUF
/// and HF), qwen2 (biases), qwen3 (q/k norms; GGUF and HF), gemma2 (post-norms, soft-caps,
/// GELU, scaled embedding, sliding layers), gemma3 (q/k norms, local RoPE base) and nemotron
/// (LayerNorm with biases, biases on o/up/down, partial RoPE, ungated relu²; GGUF and HF)
/// and phi3 (fused qkv and gate|up trained through their parts, LongRoPE; GGUF and HF), and
/// the mixtures of experts mixtral, qwen3moe and qwen2moe (router, experts trained through
/// GGUF's stacks or HF's one tensor each, the shared expert and its gate; GGUF and HF).
final class TrainableDecoderTests: XCTestCase {
    static let models = ["tiny-llama.gguf", "tiny-qwen2.gguf", "tiny-llama-hf", "tiny-qwen3.gguf", "tiny-qwen3-hf", "tiny-gemma2.gguf", "tiny-gemma3.gguf",
                         "tiny-nemotron.gguf", "tiny-nemotron-hf", "tiny-nemotron-headdim.gguf", "tiny-phi3.gguf", "tiny-phi3-hf",
                         "tiny-mixtral.gguf", "tiny-mixtral-hf", "tiny-qwen3moe.gguf", "tiny-qwen3moe-hf", "tiny-qwen2moe.gguf", "tiny-qwen2moe-hf"]

    func lossHead(_ student: TrainableDecoder, tokens: [Int32], targets: KDTargets) -> TrainableDecoder.LossHead {
        let k = LossKernels(vocab: student.spec.vocab)
        return { r0, n, logits, grad in
            let sub = targets.rows(r0..<(r0 + n))
            let kd = k.distillation(.forwardKL, logits: logits, targets: sub, temperature: 1.3, scale: 0.7, grad: grad)
            let ce = k.crossEntropy(logits: logits, labels: nextTokenLabels(tokens, rows: r0..<(r0 + n)), scale: 0.3, grad: grad)
            return zip(kd, ce).reduce(0) { $0 + 0.7 * $1.0 + 0.3 * $1.1 }
        }
    }

    func randomTargets(rows: Int, vocab: Int, seed: UInt64) -> KDTargets {
        var rng = SplitMix64(seed: seed)
        var t = KDTargets()
        for _ in 0..<rows {
            var ids = Set<Int32>()
            while ids.count < 6 { ids.insert(Int32(rng.next() % UInt64(vocab))) }
            var left = 1.0  // targets sum to 1, as KDTargets makes them
            for id in ids.sorted() {
                let p = left * Double(rng.next() % 500 + 100) / 1000
                t.ids.append(id); t.probabilities.append(Float(p)); left -= p
            }
            t.tails.append(Float(left)); t.offsets.append(Int64(t.ids.count))
        }
        return t
    }

    func testGradientsMatchFiniteDifferences() throws {
        for name in Self.models {
            let model = try DecoderModel(path: fixturesPath + "/engine/\(name)")
            let student = try TrainableDecoder(model: model)
            student.logitRows = 5  // several head blocks per sequence
            let tokens: [Int32] = [1, 17, 200, 45, 45, 9, 130, 77, 3, 250, 64, 12]
            let targets = randomTargets(rows: tokens.count, vocab: student.spec.vocab, seed: 4)
            let head = lossHead(student, tokens: tokens, targets: targets)
            student.zeroGrads()
            _ = student.forwardBackward(tokens, loss: head)
            let analytic = Array(UnsafeBufferPointer(start: student.grads.pointer, count: student.grads.count))
            var rng = SplitMix64(seed: 8)
            let routing = student.lastRouting
            var checked = 0
            for slot in student.slots {
                var done = 0, skipped = 0
                while done < 2 {
                    let i = slot.offset + Int(rng.next() % UInt64(slot.count))
                    let keep = student.weights[i]
                    let h: Float = 1e-2
                    student.weights[i] = keep + h
                    let up = student.forwardBackward(tokens, loss: head)
                    let routingUp = student.lastRouting
                    student.weights[i] = keep - h
                    let down = student.forwardBackward(tokens, loss: head)
                    let routingDown = student.lastRouting
                    student.weights[i] = keep
                    if routingUp != routing || routingDown != routing {
                        // The step moved a token to another expert: the loss jumps there, no derivative to compare.
                        skipped += 1
                        if skipped == 8 { XCTFail("\(name) \(slot.name): every step changes the routing"); break }
                        continue
                    }
                    let fd = (up - down) / Double(2 * h)
                    XCTAssertLessThan(abs(fd - Double(analytic[i])), 2e-3 + 2e-2 * abs(fd),
                                      "\(name) \(slot.name)[\(i - slot.offset)]: finite difference \(fd), backward \(analytic[i])")
                    done += 1
                    checked += 1
                }
            }
            XCTAssertEqual(checked, 2 * student.slots.count)
        }
    }

    func testForwardMatchesTheEngine() throws {
        // GGUF (llama.cpp's Q/K row order) and HF safetensors (NeoX RoPE layout).
        for name in Self.models {
            let model = try DecoderModel(path: fixturesPath + "/engine/\(name)")
            let student = try TrainableDecoder(model: model)
            let tokens: [Int32] = [1, 5, 99, 240, 7, 7, 31, 180]
            var ours = [Float]()
            _ = student.forwardBackward(tokens) { _, n, logits, _ in
                ours += UnsafeBufferPointer(start: logits, count: n * student.spec.vocab)
                return 0
            }
            let stream = LayerStream(model: model)
            stream.llamaCppRounding = false
            var engine = [Float]()
            try stream.run([tokens], outputs: { _ in 0..<tokens.count }) { _, _, rows in engine += rows }
            XCTAssertEqual(ours.count, engine.count)
            let worst = zip(ours, engine).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-3, name)
        }
    }

    /// int8 products (forward and input gradients) against f32 on every architecture:
    /// the logits within quantization error, the gradient pointing the same way.
    func testInt8ProductsTrackF32() throws {
        for name in Self.models {
            let model = try DecoderModel(path: fixturesPath + "/engine/\(name)")
            let student = try TrainableDecoder(model: model)
            student.vocabSlice = 96  // the head in several slices
            let tokens: [Int32] = [1, 17, 200, 45, 45, 9, 130, 77, 3, 250, 64, 12]
            let targets = randomTargets(rows: tokens.count, vocab: student.spec.vocab, seed: 4)
            let head = lossHead(student, tokens: tokens, targets: targets)
            func run() -> (logits: [Float], grads: [Float], loss: Double) {
                var logits = [Float]()
                student.zeroGrads()
                let loss = student.forwardBackward(tokens) { r0, n, l, g in
                    logits += UnsafeBufferPointer(start: l, count: n * student.spec.vocab)
                    return head(r0, n, l, g)
                }
                return (logits, Array(UnsafeBufferPointer(start: student.grads.pointer, count: student.grads.count)), loss)
            }
            let f32 = run()
            student.products = .int8
            let q8 = run()
            let q8again = run()
            XCTAssertEqual(q8.grads, q8again.grads, "\(name): int8 with cached quantized weights is deterministic")
            var num = 0.0, den = 0.0
            for (a, b) in zip(f32.logits, q8.logits) { num += Double(a - b) * Double(a - b); den += Double(a) * Double(a) }
            XCTAssertLessThan((num / den).squareRoot(), 0.03, "\(name): logits relative error")
            XCTAssertGreaterThan(num, 0, "\(name): int8 must differ from f32 somewhere")
            XCTAssertEqual(q8.loss, f32.loss, accuracy: 0.02 * abs(f32.loss), name)
            var dot = 0.0, na = 0.0, nb = 0.0
            for (a, b) in zip(f32.grads, q8.grads) { dot += Double(a) * Double(b); na += Double(a) * Double(a); nb += Double(b) * Double(b) }
            XCTAssertGreaterThan(dot / (na * nb).squareRoot(), 0.99, "\(name): gradient cosine")
        }
    }

    /// The student's forward pass against the float64 numpy forward pass the fixtures
    /// were made with (itself checked against transformers): logits and layer 0's output.
    func testForwardMatchesTheNumpyReference() throws {
        for arch in ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "nemotron", "nemotron-headdim", "phi3"] {
            let reference = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/engine/tiny-\(arch).json"))
            let tokens = try XCTUnwrap(reference["tokens"]?.arrayValue).map { Int32($0.nonNegativeInt!) }
            let logits = try XCTUnwrap(reference["logits"]?.arrayValue).flatMap { $0.arrayValue!.map { Float($0.doubleValue!) } }
            let layer0 = try XCTUnwrap(reference["layer0_output"]?.arrayValue).flatMap { $0.arrayValue!.map { Float($0.doubleValue!) } }
            let student = try TrainableDecoder(model: DecoderModel(path: fixturesPath + "/engine/tiny-\(arch).gguf"))
            var ours = [Float](), hidden = [Float]()
            _ = student.forwardBackward(tokens, backward: false, hiddenLayers: [0], hidden: { _, h, _ in
                hidden = Array(UnsafeBufferPointer(start: h, count: tokens.count * student.spec.hidden))
                return 0
            }) { _, n, l, _ in
                ours += UnsafeBufferPointer(start: l, count: n * student.spec.vocab)
                return 0
            }
            XCTAssertEqual(ours.count, logits.count, arch)
            XCTAssertLessThan(zip(ours, logits).map { abs($0 - $1) }.max()!, 2e-3, "\(arch) logits")
            XCTAssertLessThan(zip(hidden, layer0).map { abs($0 - $1) }.max()!, 2e-3, "\(arch) layer 0 output")
        }
    }
}
