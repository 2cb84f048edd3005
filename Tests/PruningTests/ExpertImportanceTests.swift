import Basics
import CheckpointIO
import Conversion
import Models
import Pruning
import TensorMath
import TestSupport
import XCTest

/// Per-expert importance of the tiny mixtures of experts against an independent reference
/// (Tools/reference/make_moe_importance.py: transformers' MLP inputs, routed and run per
/// expert in float64 numpy), and what `prune --experts` makes of it.
final class ExpertImportanceTests: XCTestCase {
    static let families = ["mixtral", "qwen3moe", "qwen2moe"]

    struct Reference {
        let samples: [[Int32]]
        let families: JSONValue
    }

    func reference() throws -> Reference {
        let json = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/engine/moe-importance.json"))
        let samples = json["samples"]!.arrayValue!.map { $0.arrayValue!.map { Int32($0.nonNegativeInt!) } }
        return Reference(samples: samples, families: json["families"]!)
    }

    func numbers(_ v: JSONValue?) -> [Double] { v!.arrayValue!.map { $0.doubleValue! } }

    /// Calibration runs as llama.cpp rounds (f16 keys and values): ~1e-4 from float64.
    func assertClose(_ a: [Double], _ b: [Double], _ what: String, tolerance: Double = 1e-3) {
        XCTAssertEqual(a.count, b.count, what)
        for (x, y) in zip(a, b) where abs(x - y) > tolerance * max(1, abs(y)) {
            XCTFail("\(what): ckpt \(x), reference \(y)")
            return
        }
    }

    /// Routing mass, choice share, weight × ‖output‖ and every expert's neurons, aggregated
    /// l2 and mean over samples, equal the reference's in both file forms of each family.
    func testExpertStatisticsMatchTheReference() throws {
        ThreadPool.setThreads(2)
        let ref = try reference()
        for fam in Self.families {
            let expected = ref.families[fam]!
            for path in ["/engine/tiny-\(fam).gguf", "/engine/tiny-\(fam)-hf"] {
                let model = try DecoderModel(path: fixturesPath + path)
                let stats = try Calibration.run(model: model, samples: ref.samples, range: 0..<ref.samples.count, batch: 2)
                XCTAssertEqual(stats.shape.experts, expected["experts"]!.nonNegativeInt, fam)
                for (l, layer) in expected["layers"]!.arrayValue!.enumerated() {
                    let at = "\(path) layer \(l)"
                    for (agg, suffix) in [(Aggregation.l2, "l2"), (.mean, "mean")] {
                        assertClose(stats.expertScores(layer: l, metric: .routing, agg), numbers(layer["routing_\(suffix)"]), "\(at) routing \(suffix)")
                        assertClose(stats.expertScores(layer: l, metric: .selected, agg), numbers(layer["selected_\(suffix)"]), "\(at) selected \(suffix)")
                        assertClose(stats.expertScores(layer: l, metric: .output, agg), numbers(layer["output_\(suffix)"]), "\(at) output \(suffix)")
                        let neurons = (0..<stats.shape.experts).flatMap { stats.expertNeuronScores(layer: l, expert: $0, agg) }
                        assertClose(neurons, numbers(layer["neurons_\(suffix)"]), "\(at) neurons \(suffix)")
                    }
                    // Every token chooses k experts: the choice shares (mean) add up to k.
                    XCTAssertEqual(stats.expertScores(layer: l, metric: .selected, .mean).reduce(0, +), Double(model.spec.expertsUsed), accuracy: 1e-9, at)
                }
                XCTAssertTrue(stats.layers.allSatisfy { $0.neurons.channels == 0 }, "a mixture has no dense neurons")
            }
        }
    }

    /// Shards of a mixture's calibration merge to the unsharded sums bit for bit, and the
    /// file (version 2, with the experts' arrays) reads back equal; a dense model's file
    /// stays version 1.
    func testShardsMergeAndTheFileRoundTrips() throws {
        ThreadPool.setThreads(2)
        let ref = try reference()
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-qwen3moe.gguf")
        let all = ref.samples
        let whole = try Calibration.run(model: model, samples: all, range: 0..<all.count, batch: 3)
        var merged = try Calibration.run(model: model, samples: all, range: 0..<1, batch: 1)
        try merged.merge(Calibration.run(model: model, samples: all, range: 1..<all.count, batch: 1))
        XCTAssertEqual(merged, whole)
        let dir = makeTemporaryDirectory()
        try ImportanceFile.write(whole, to: dir + "/moe.imp")
        XCTAssertEqual(try ImportanceFile.read(dir + "/moe.imp"), whole)
        let header = String(decoding: try FileSystem.readFile(dir + "/moe.imp").prefix(4096), as: UTF8.self)
        XCTAssertTrue(header.contains("\"version\": 2") && header.contains("\"experts\": 6") && header.contains("layers.0.expert_neurons.sum_squares"), header)
        XCTAssertFalse(header.contains("layers.0.neurons."), "no empty dense arrays are listed")
        // A version-1 header over the experts' layout is refused, naming the file.
        var bytes = try FileSystem.readFile(dir + "/moe.imp")
        let at = try XCTUnwrap(String(decoding: bytes, as: UTF8.self).range(of: "\"version\": 2")).upperBound.utf16Offset(in: String(decoding: bytes, as: UTF8.self))
        bytes[at - 1] = UInt8(ascii: "1")
        writeFile(dir + "/v1.imp", bytes)
        XCTAssertThrowsError(try ImportanceFile.read(dir + "/v1.imp")) { e in
            XCTAssertTrue("\(e)".contains("v1.imp") && "\(e)".contains("version 1 with 6 experts"), "\(e)")
        }
        let dense = try Calibration.run(model: DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf"), samples: all, range: 0..<1, batch: 1)
        try ImportanceFile.write(dense, to: dir + "/dense.imp")
        let denseHeader = String(decoding: try FileSystem.readFile(dir + "/dense.imp").prefix(4096), as: UTF8.self)
        XCTAssertTrue(denseHeader.contains("\"version\": 1") && !denseHeader.contains("expert"), denseHeader)
    }

    /// `--experts 2 --ffn 16` by activation keeps, in every layer, the two experts of
    /// highest routing mass in the reference, and in each of them its 16 neurons of highest
    /// score. The plan applied to the GGUF and the HF form of the model gives two models
    /// that say so in their shape and record, and compute the same logits.
    func testPruneKeepsTheExpertsTheReferenceRanksFirst() throws {
        ThreadPool.setThreads(2)
        let ref = try reference()
        for fam in Self.families {
            let expected = ref.families[fam]!["layers"]!.arrayValue!
            let gguf = try DecoderModel(path: fixturesPath + "/engine/tiny-\(fam).gguf")
            let stats = try Calibration.run(model: gguf, samples: ref.samples, range: 0..<ref.samples.count, batch: 3)
            let plan = try PrunePlanner.plan(model: gguf, target: PruneTarget(ffn: 16, experts: 2), method: .activation, stats: stats)
            for (k, layer) in expected.enumerated() {
                XCTAssertEqual(plan.experts[k], topIndices(numbers(layer["routing_l2"]), keep: 2), "\(fam) layer \(k)")
                let F = gguf.spec.ffn, neurons = numbers(layer["neurons_l2"])
                for (j, e) in plan.experts[k].enumerated() {
                    XCTAssertEqual(plan.expertNeurons[k][j], topIndices(Array(neurons[(e * F)..<((e + 1) * F)]), keep: 16), "\(fam) layer \(k) expert \(e)")
                }
            }
            var outputs: [[Float]] = []
            for model in [gguf, try DecoderModel(path: fixturesPath + "/engine/tiny-\(fam)-hf")] {
                let dir = makeTemporaryDirectory()
                let out = dir + (model.checkpoint.format == .gguf ? "/p.gguf" : "/p")
                var options = ConversionOptions(target: model.checkpoint.format)
                options.edit = try Surgery.edit(model: model, plan: plan, record: PruneRecord(plan: plan, spec: model.spec, source: model.path, importance: nil))
                _ = try Converter(source: model.checkpoint, output: out, options: options).run()
                let pruned = try DecoderModel(path: out)
                XCTAssertEqual([pruned.spec.experts, pruned.spec.expertsUsed, pruned.spec.ffn], [2, 2, 16], out)
                XCTAssertEqual(try PruneRecord.read(from: pruned.checkpoint)?.expertsKept, plan.experts, out)
                let stream = LayerStream(model: pruned)
                stream.llamaCppRounding = false
                var logits: [Float] = []
                try stream.run([ref.samples[0]], outputs: { _ in 0..<ref.samples[0].count }) { _, _, l in logits += l }
                XCTAssertEqual(logits.count, ref.samples[0].count * pruned.spec.vocab)
                outputs.append(logits)
            }
            let worst = zip(outputs[0], outputs[1]).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-4, "\(fam): the pruned GGUF and HF models' logits differ by \(worst)")
        }
    }

    /// Expert pruning asked of a dense model, or to as many experts as there are, is refused.
    func testExpertTargetsAreChecked() throws {
        let dense = try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf")
        XCTAssertThrowsError(try PrunePlanner.plan(model: dense, target: PruneTarget(experts: 1), method: .magnitude, stats: nil)) { e in
            XCTAssertEqual(e as? PruneError, .notAMixture(architecture: "llama"))
        }
        let moe = try DecoderModel(path: fixturesPath + "/engine/tiny-mixtral.gguf")
        XCTAssertThrowsError(try PrunePlanner.plan(model: moe, target: PruneTarget(experts: 4), method: .magnitude, stats: nil)) { e in
            XCTAssertEqual(e as? PruneError, .targetTooLarge(what: "an expert count of", requested: 4, current: 4))
        }
        XCTAssertThrowsError(try PrunePlanner.plan(model: moe, target: PruneTarget(experts: 2), method: .activation, stats: nil)) { e in
            XCTAssertEqual(e as? PruneError, .needsStatistics(method: "activation"))
        }
    }
}
