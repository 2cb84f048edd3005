import Basics
import CheckpointIO
import CKernels
import Models
import TensorMath
import TestSupport
import XCTest

/// The engine on the real SmolLM2 model against llama.cpp's own logits
/// (Tests/Fixtures/engine/smollm2-chunk0-ctx128.json, from Tools/reference/llama_perplexity.py).
final class EngineTests: XCTestCase {
    struct Position {
        let pos: Int
        let topIDs: [Int]
        let topLogits: [Double]
        let logsumexp: Double
        let nextID: Int
        let nextLogit: Double
    }

    func loadReference() throws -> (tokens: [Int32], positions: [Position], nll: Double) {
        let json = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/engine/smollm2-chunk0-ctx128.json"))
        let tokens = try XCTUnwrap(json["tokens"]?.arrayValue).map { Int32($0.nonNegativeInt!) }
        let positions = try XCTUnwrap(json["positions"]?.arrayValue).map { p in
            Position(pos: p["pos"]!.nonNegativeInt!, topIDs: p["top_ids"]!.arrayValue!.map { $0.nonNegativeInt! },
                     topLogits: p["top_logits"]!.arrayValue!.map { $0.doubleValue! }, logsumexp: p["logsumexp"]!.doubleValue!,
                     nextID: p["next_id"]!.nonNegativeInt!, nextLogit: p["next_logit"]!.doubleValue!)
        }
        return (tokens, positions, try XCTUnwrap(json["nll"]?.doubleValue))
    }

    /// With llama.cpp's activation rounding on (the default), what must hold: the same top
    /// token almost everywhere, log-probabilities within a few tenths (additions happen in
    /// another order, and llama.cpp's Q·K and P·V see f16 operands), and the NLL within 0.5%.
    func testSmolLM2LogitsMatchLlamaCpp() throws {
        try XCTSkipUnless(FileSystem.kind(of: smolLM2Path) == .file, "run Tools/fetch_model first")
        let ref = try loadReference()
        ThreadPool.setThreads(2)
        let model = try DecoderModel(path: smolLM2Path)
        XCTAssertEqual(model.spec.architecture, "llama")
        XCTAssertFalse(model.spec.ropeNeox, "llama GGUF stores Q/K permuted for adjacent-pair RoPE")
        let stream = LayerStream(model: model)
        let vocab = model.spec.vocab
        var top1Agree = 0, maxLogprobDiff = 0.0, nll = 0.0
        let first = ref.positions.first!.pos, last = ref.positions.last!.pos
        try stream.run([ref.tokens], outputs: { _ in first..<(last + 1) }) { _, p0, logits in
            for r in 0..<(logits.count / vocab) {
                let row = logits.baseAddress! + r * vocab
                let p = ref.positions[p0 + r - first]
                let lse = ckpt_logsumexp(row, Int64(vocab))
                var best = 0
                for i in 1..<vocab where row[i] > row[best] { best = i }
                if best == p.topIDs[0] { top1Agree += 1 }
                for (id, logit) in zip(p.topIDs, p.topLogits) {
                    maxLogprobDiff = max(maxLogprobDiff, abs((Double(row[id]) - lse) - (logit - p.logsumexp)))
                }
                if p.pos < last { nll += lse - Double(row[p.nextID]) }
            }
        }
        let n = ref.positions.count
        nll /= Double(n - 1)
        XCTAssertGreaterThanOrEqual(Double(top1Agree) / Double(n), 0.95, "top-1 agreement \(top1Agree)/\(n)")
        XCTAssertLessThan(maxLogprobDiff, 0.5, "largest log-probability difference on llama.cpp's top-8 ids")
        XCTAssertEqual(nll, ref.nll, accuracy: 0.005 * ref.nll, "chunk NLL: ours \(nll), llama.cpp \(ref.nll)")
        print("smollm2 vs llama.cpp: top-1 \(top1Agree)/\(n), max |Δ logprob| \(maxLogprobDiff), nll \(nll) vs \(ref.nll)")
    }
}
