import Basics
import CheckpointIO
import Models
import Pruning
import TensorMath
import TestSupport
import XCTest

final class ImportanceTests: XCTestCase {
    var tinyLlama: String { fixturesPath + "/engine/tiny-llama.gguf" }

    /// Calibration samples for the tiny byte-vocabulary models: the Formats docs' bytes.
    func samples(count: Int, seq: Int) throws -> [[Int32]] {
        let text = try FileSystem.readFile(repositoryRoot + "/Formats/gguf.md")
        let tokens = text.map { Int32($0) }
        return try Calibration.samples(from: tokens, count: count, seq: seq, bos: nil, path: "gguf.md")
    }

    /// Four shards run separately and merged equal one run over all samples, bit for bit,
    /// whatever the merge order and the batch sizes.
    func testShardedRunsMergeToTheUnshardedSums() throws {
        ThreadPool.setThreads(2)
        let model = try DecoderModel(path: tinyLlama)
        let all = try samples(count: 10, seq: 24)
        let whole = try Calibration.run(model: model, samples: all, range: 0..<10, batch: 3)
        var shards: [ImportanceStats] = []
        for i in 0..<4 {
            let r = try Calibration.shardRange("\(i)/4", samples: 10)
            shards.append(try Calibration.run(model: model, samples: all, range: r, batch: 2))
        }
        var merged = shards[0]
        for s in shards.dropFirst() { try merged.merge(s) }
        XCTAssertEqual(merged, whole)
        var reversed = shards[3]
        for s in shards.dropLast().reversed() { try reversed.merge(s) }
        XCTAssertEqual(reversed, whole)
        XCTAssertEqual(whole.samples, 10)
        XCTAssertEqual(whole.tokens, 240)
        XCTAssertThrowsError(try merged.merge(shards[1])) { e in
            XCTAssertTrue("\(e)".contains("both cover samples"), "\(e)")
        }
        let other = try Calibration.run(model: DecoderModel(path: fixturesPath + "/engine/tiny-qwen2.gguf"), samples: all, range: 0..<3, batch: 3)
        var a = shards[0]
        XCTAssertThrowsError(try a.merge(other)) { e in XCTAssertTrue("\(e)".contains("different models"), "\(e)") }
    }

    func testFileRoundTripAndCorruptionIsNamed() throws {
        let model = try DecoderModel(path: tinyLlama)
        let stats = try Calibration.run(model: model, samples: samples(count: 3, seq: 16), range: 0..<3, batch: 3)
        let dir = makeTemporaryDirectory()
        try ImportanceFile.write(stats, to: dir + "/s.imp")
        XCTAssertEqual(try ImportanceFile.read(dir + "/s.imp"), stats)
        var bytes = try FileSystem.readFile(dir + "/s.imp")
        bytes.removeLast(16)
        writeFile(dir + "/cut.imp", bytes)
        XCTAssertThrowsError(try ImportanceFile.read(dir + "/cut.imp")) { e in
            XCTAssertTrue("\(e)".contains("cut.imp") && "\(e)".contains("bytes"), "\(e)")
        }
        writeFile(dir + "/junk.imp", Array("not an importance file".utf8))
        XCTAssertThrowsError(try ImportanceFile.read(dir + "/junk.imp"))
    }

    /// The scores against a direct computation from the engine's hooks, written here.
    func testScoresFollowTheirDefinitions() throws {
        let model = try DecoderModel(path: tinyLlama)
        let s = model.spec
        let all = try samples(count: 4, seq: 20)
        let stats = try Calibration.run(model: model, samples: all, range: 0..<4, batch: 4)
        var perSampleNeuronMeans: [[Double]] = []   // layer 1 neurons, per sample
        var perSampleHeadNorms: [[Double]] = []     // layer 0 heads, ‖o_h‖, per sample
        var cosSum = [Double](repeating: 0, count: s.layers)
        var input: [Float] = []
        var hooks = LayerHooks()
        hooks.layerInput = { a in input = Array(a.values) }
        hooks.layerOutput = { a in
            for t in 0..<(a.values.count / a.width) {
                var d = 0.0, x = 0.0, y = 0.0
                for c in 0..<a.width {
                    let u = Double(input[t * a.width + c]), v = Double(a.values[t * a.width + c])
                    d += u * v; x += u * u; y += v * v
                }
                cosSum[a.layer] += 1 - d / (x * y).squareRoot()
            }
        }
        hooks.mlpIntermediate = { a in
            guard a.layer == 1 else { return }
            for span in a.sequences {
                perSampleNeuronMeans.append((0..<a.width).map { c in span.rows.map { abs(Double(a.values[$0 * a.width + c])) }.reduce(0, +) / Double(span.count) })
            }
        }
        hooks.headOutputs = { a in
            guard a.layer == 0 else { return }
            for span in a.sequences {
                var means = [Double](repeating: 0, count: s.heads)
                for h in 0..<s.heads {
                    var total = 0.0
                    for t in span.rows {
                        var q = 0.0
                        for d in 0..<s.headDim {
                            let v = Double(a.values[t * a.width + h * s.headDim + d])
                            q += v * v
                        }
                        total += q.squareRoot()
                    }
                    means[h] = total / Double(span.count)
                }
                perSampleHeadNorms.append(means)
            }
        }
        try LayerStream(model: model).run(all, hooks: hooks)
        let neurons = stats.neuronScores(layer: 1, .l2)
        for c in 0..<s.ffn {
            let expected = perSampleNeuronMeans.map { $0[c] * $0[c] }.reduce(0, +).squareRoot()
            XCTAssertEqual(neurons[c], expected, accuracy: 1e-9 * max(1, expected))
        }
        let meanNeurons = stats.neuronScores(layer: 1, .mean)
        XCTAssertEqual(meanNeurons[5], perSampleNeuronMeans.map { $0[5] }.reduce(0, +) / 4, accuracy: 1e-9)
        let heads = stats.headScores(layer: 0, metric: .output, .l2)
        for h in 0..<s.heads {
            XCTAssertEqual(heads[h], perSampleHeadNorms.map { $0[h] * $0[h] }.reduce(0, +).squareRoot(), accuracy: 1e-6)
        }
        for l in 0..<s.layers { XCTAssertEqual(stats.blockInfluence[l], cosSum[l] / 80, accuracy: 1e-9) }
        XCTAssertEqual(stats.degenerateTokens, [Int](repeating: 0, count: s.layers))
        // Contributions are positive and differ from the plain output norms.
        let contrib = stats.headScores(layer: 0, metric: .contribution)
        XCTAssertTrue(contrib.allSatisfy { $0 > 0 })
        XCTAssertNotEqual(topIndices(contrib, keep: s.heads), [])
        XCTAssertEqual(topIndices([3, 1, 4, 1, 5], keep: 3), [0, 2, 4])
        XCTAssertEqual(stats.leastInfluentialBlock(of: s.layers), 0)
    }

    func testShortCalibrationAndBadShardAreRefused() throws {
        XCTAssertThrowsError(try Calibration.samples(from: [1, 2, 3], count: 2, seq: 2, bos: nil, path: "c.txt")) { e in
            XCTAssertEqual(e as? ImportanceError, .calibrationTooShort(path: "c.txt", tokens: 3, needed: 4, samples: 2, seq: 2))
        }
        for bad in ["4/4", "1", "-1/2", "a/b", "0/0"] {
            XCTAssertThrowsError(try Calibration.shardRange(bad, samples: 8), bad)
        }
        XCTAssertEqual(try Calibration.shardRange("3/4", samples: 10), 7..<10)
    }
}

final class ImatrixTests: XCTestCase {
    /// llama.cpp's GGUF importance matrix: per weight `<name>.in_sum2` [1, n_cols] of Σx² and
    /// `<name>.counts` [1, 1] of tokens, F32, with the imatrix.* keys llama-quantize requires.
    func testExportWritesLlamaCppImatrixLayout() throws {
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf")
        let text = try FileSystem.readFile(repositoryRoot + "/Formats/gguf.md").map { Int32($0) }
        let samples = try Calibration.samples(from: text, count: 2, seq: 16, bos: nil, path: "gguf.md")
        let stats = try Calibration.run(model: model, samples: samples, range: 0..<2, batch: 2)
        let path = makeTemporaryDirectory() + "/imatrix.gguf"
        try Imatrix.write(stats, to: path, dataset: "test", overwrite: false)
        let g = try openCheckpoint(path: path)
        XCTAssertEqual(g.metadata["general.type"]?.stringValue, "imatrix")
        XCTAssertEqual(g.metadata["imatrix.chunk_count"], .uint32(2))
        XCTAssertEqual(g.metadata["imatrix.chunk_size"], .uint32(16))
        XCTAssertEqual(g.tensors.count, 2 * 7 * 2, "7 matrices per layer, 2 layers, sums and counts")
        let down = try XCTUnwrap(g.tensor(named: "blk.1.ffn_down.weight.in_sum2"))
        XCTAssertEqual(down.shape, [1, 128])
        var v = [Float](repeating: 0, count: 128)
        try v.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(down, rows: 0..<1, into: $0.baseAddress!) }
        let expected = stats.layers[1].neurons.inputNorms.map { Float($0 * $0) }
        for i in 0..<128 { XCTAssertEqual(v[i], expected[i], accuracy: 1e-5 * max(1, expected[i])) }
        let counts = try XCTUnwrap(g.tensor(named: "blk.0.attn_q.weight.counts"))
        var c: [Float] = [0]
        try c.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(counts, rows: 0..<1, into: $0.baseAddress!) }
        XCTAssertEqual(c[0], 32)
    }
}
