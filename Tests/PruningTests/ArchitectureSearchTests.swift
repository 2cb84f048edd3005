import Basics
import CheckpointIO
import Models
@testable import Pruning
import TestSupport
import XCTest

/// Minitron's shape search: candidates near the goal, ties broken by shape (not by how
/// the shape's label sorts as text), ranked by the held-out perplexity of each pruned model.
final class ArchitectureSearchTests: XCTestCase {
    func candidate(layers: Int, hidden: Int, parameters: Int) -> ArchitectureSearch.Candidate {
        ArchitectureSearch.Candidate(target: PruneTarget(layers: layers), parameters: parameters, layers: layers, hidden: hidden, ffn: 256, heads: 8)
    }

    func testEqualDistancesPreferDeeperThenWider() {
        let goal = 1000
        // As text "layers 15" sorts before "layers 16": the shallower shape won the tie.
        let shallow = candidate(layers: 15, hidden: 512, parameters: 990), deep = candidate(layers: 16, hidden: 448, parameters: 1010)
        XCTAssertTrue(ArchitectureSearch.ranksBefore(deep, shallow, goal: goal))
        XCTAssertFalse(ArchitectureSearch.ranksBefore(shallow, deep, goal: goal))
        // "hidden 1024" < "hidden 960" as text, and as numbers the other way round.
        let narrow = candidate(layers: 9, hidden: 960, parameters: 1000), wide = candidate(layers: 9, hidden: 1024, parameters: 1000)
        XCTAssertTrue(ArchitectureSearch.ranksBefore(wide, narrow, goal: goal))
        // Distance still comes first.
        XCTAssertTrue(ArchitectureSearch.ranksBefore(candidate(layers: 2, hidden: 64, parameters: 1001), deep, goal: goal))
    }

    func testParameterCounts() {
        XCTAssertEqual(ArchitectureSearch.parameterCount("90M"), 90_000_000)
        XCTAssertEqual(ArchitectureSearch.parameterCount("1.5b"), 1_500_000_000)
        XCTAssertEqual(ArchitectureSearch.parameterCount("8e9"), 8_000_000_000)
        for bad in ["", "M", "-3M", "0", "lots", "1e20"] { XCTAssertNil(ArchitectureSearch.parameterCount(bad), bad) }
    }

    /// On the tiny llama: every candidate is within 5% of the goal and in rank order, and
    /// ranking prunes, measures and cleans up after each one.
    func testCandidatesAndRanking() throws {
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf")
        let s = model.spec, tied = model.tensor(.lmHead) == nil
        let full = PrunePlan(keptLayers: Array(0..<s.layers), neurons: (0..<s.layers).map { _ in Array(0..<s.ffn) },
                             heads: (0..<s.layers).map { _ in Array(0..<s.heads) }, hiddenChannels: Array(0..<s.hidden), method: .random)
        let goal = full.parameterCount(spec: s, tiedHead: tied) * 3 / 4
        let candidates = ArchitectureSearch.candidates(spec: s, tiedHead: tied, parameters: goal, tolerance: 0.1)
        XCTAssertFalse(candidates.isEmpty)
        for c in candidates { XCTAssertLessThanOrEqual(abs(Double(c.parameters - goal)), 0.1 * Double(goal), c.label) }
        for (a, b) in zip(candidates, candidates.dropFirst()) where abs(a.parameters - goal) != abs(b.parameters - goal) {
            XCTAssertLessThan(abs(a.parameters - goal), abs(b.parameters - goal))
        }
        let dir = makeTemporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var rng = SplitMix64(seed: 5)
        let tokens = (0..<600).map { _ in Int32(rng.below(s.vocab)) }
        var heard = 0
        let ranked = try ArchitectureSearch.rank(model: model, candidates: Array(candidates.prefix(3)), method: .random, stats: nil,
                                                 headMetric: .contribution, seed: 1, tokens: tokens, bos: nil, chunks: 1,
                                                 scratchDirectory: dir) { _, r in heard += 1; XCTAssertTrue(r.perplexity.isFinite) }
        XCTAssertEqual(heard, min(3, candidates.count))
        XCTAssertEqual(ranked.map(\.perplexity), ranked.map(\.perplexity).sorted())
        XCTAssertEqual(try FileSystem.list(directory: dir), [], "scratch models are deleted")
    }
}
