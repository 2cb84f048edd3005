import Basics
@testable import Models
import TensorMath
import XCTest

final class GenerationTests: XCTestCase {
    func testChatFormatsAreDetectedAsLlamaCppDoes() {
        XCTAssertEqual(ChatFormat.detect("{% for m in messages %}<|im_start|>{{ m.role }}…"), .chatml)
        XCTAssertEqual(ChatFormat.detect("<|start_header_id|>{{ role }}<|end_header_id|>"), .llama3)
        XCTAssertEqual(ChatFormat.detect("<start_of_turn>user"), .gemma)
        XCTAssertEqual(ChatFormat.detect("[INST] {{ content }} [/INST]"), .mistral)
        XCTAssertNil(ChatFormat.detect("{{ content }}"))
        XCTAssertNil(ChatFormat.detect(nil))
        XCTAssertEqual(ChatFormat.chatml.prompt(user: "Hi", system: "Be brief."),
                       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(ChatFormat.gemma.prompt(user: "Hi"), "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
    }

    /// Top-k without sorting the vocabulary: the same indices, in the same order (ties by
    /// index), as the prefix of a full sort, for k small and large and with many ties.
    func testTopKSelectionEqualsTheSortedPrefix() {
        var rng = SplitMix64(seed: 3)
        for (n, levels) in [(49152, 1 << 20), (1000, 7), (300, 2)] {
            let logits = (0..<n).map { _ in Float(Int(rng.next() % UInt64(levels))) / 100 }
            logits.withUnsafeBufferPointer { buf in
                var order = Array(0..<n)
                order.sort { buf[$0] > buf[$1] || (buf[$0] == buf[$1] && $0 < $1) }
                for k in [1, 5, 40, n / 3, n] {
                    XCTAssertEqual(Sampler.best(k, of: buf), Array(order.prefix(k)), "n \(n) k \(k)")
                }
            }
        }
    }

    func testSamplerIsGreedyAtZeroAndFollowsTheDistribution() {
        let logits: [Float] = [0, 1, 3, 2, -1]
        logits.withUnsafeBufferPointer { l in
            var greedy = Sampler(temperature: 0)
            XCTAssertEqual(greedy.sample(l), 2)
            var top1 = Sampler(temperature: 1, topK: 1, seed: 9)
            for _ in 0..<20 { XCTAssertEqual(top1.sample(l), 2) }
            // Temperature 1, no cuts: frequencies follow softmax(logits) (seeded, so exact counts repeat).
            var s = Sampler(temperature: 1, topK: 0, topP: 1, seed: 42)
            var counts = [Int](repeating: 0, count: 5)
            for _ in 0..<20000 { counts[Int(s.sample(l))] += 1 }
            let z = logits.map { exp(Double($0)) }.reduce(0, +)
            for i in 0..<5 {
                XCTAssertEqual(Double(counts[i]) / 20000, exp(Double(logits[i])) / z, accuracy: 0.015, "token \(i)")
            }
            // top-p 0.5 keeps only the single most likely token here (p ≈ 0.64).
            var nucleus = Sampler(temperature: 1, topK: 0, topP: 0.5, seed: 1)
            for _ in 0..<20 { XCTAssertEqual(nucleus.sample(l), 2) }
        }
    }
}
