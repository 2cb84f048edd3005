import Basics
import CheckpointIO
import Conversion
import Models
import Pruning
import TensorMath
import TestSupport
import XCTest

final class PruneTests: XCTestCase {
    func prune(_ path: String, plan: (DecoderModel) throws -> PrunePlan, to out: String) throws -> DecoderModel {
        let model = try DecoderModel(path: path)
        var options = ConversionOptions(target: model.checkpoint.format)
        let plan = try plan(model)
        options.edit = try Surgery.edit(model: model, plan: plan, record: PruneRecord(plan: plan, spec: model.spec, source: path, importance: nil))
        _ = try Converter(source: model.checkpoint, output: out, options: options).run()
        return try DecoderModel(path: out)
    }

    func logits(_ model: DecoderModel, _ tokens: [Int32]) throws -> [Float] {
        let stream = LayerStream(model: model)
        stream.llamaCppRounding = false
        var out: [Float] = []
        try stream.run([tokens], outputs: { _ in 0..<tokens.count }) { _, _, l in out += l }
        return out
    }

    /// Every axis at once on the tiny llama: the output's tensors are exactly the kept
    /// slices of the source's (F32, so bit for bit), layers renumbered, metadata updated;
    /// GGUF and HF forms pruned with the same plan compute the same logits.
    func testWidthAndDepthSurgeryKeepsExactSlices() throws {
        let dir = makeTemporaryDirectory()
        let src = try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf")
        let s = src.spec
        let plan = PrunePlan(keptLayers: [1], neurons: [[0, 5, 7] + Array(20..<61)], heads: [[1, 3]],
                             hiddenChannels: Array(stride(from: 0, to: 64, by: 2)), method: .random)
        XCTAssertEqual(s.heads, 4); XCTAssertEqual(s.kvHeads, 2)
        let out = try prune(src.path, plan: { _ in plan }, to: dir + "/p.gguf")
        XCTAssertEqual(out.spec.layers, 1)
        XCTAssertEqual(out.spec.hidden, 32)
        XCTAssertEqual(out.spec.ffn, 44)
        XCTAssertEqual(out.spec.heads, 2)
        XCTAssertEqual(out.spec.kvHeads, 2)
        XCTAssertEqual(out.spec.headDim, s.headDim, "head_dim stays (written explicitly)")
        func values(_ m: DecoderModel, _ role: TensorRole) throws -> (shape: [Int], v: [Float]) {
            let t = m.tensor(role)!
            var v = [Float](repeating: 0, count: t.elementCount)
            try v.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: 0..<t.rowCount, into: $0.baseAddress!) }
            return (t.shape, v)
        }
        let q0 = try values(src, .layer(1, .attnQ)), q1 = try values(out, .layer(0, .attnQ))
        let qRows = [1, 3].flatMap { h in (h * s.headDim)..<((h + 1) * s.headDim) }
        XCTAssertEqual(q1.shape, [qRows.count, 32])
        for (r, sr) in qRows.enumerated() { for (c, sc) in plan.hiddenChannels.enumerated() {
            XCTAssertEqual(q1.v[r * 32 + c], q0.v[sr * s.hidden + sc])
        } }
        let d0 = try values(src, .layer(1, .mlpDown)), d1 = try values(out, .layer(0, .mlpDown))
        XCTAssertEqual(d1.shape, [32, 44])
        for (r, sr) in plan.hiddenChannels.enumerated() { for (c, sc) in plan.neurons[0].enumerated() {
            XCTAssertEqual(d1.v[r * 44 + c], d0.v[sr * s.ffn + sc])
        } }
        let e0 = try values(src, .embed), e1 = try values(out, .embed)
        XCTAssertEqual(e1.shape, [s.vocab, 32])
        XCTAssertEqual(e1.v[5 * 32 + 3], e0.v[5 * s.hidden + 6])
        // The record distillation pairs layers and channels by reads back as written.
        let record = PruneRecord(plan: plan, spec: s, source: fixturesPath + "/engine/tiny-llama.gguf", importance: nil)
        XCTAssertEqual(try PruneRecord.read(from: out.checkpoint), record)
        XCTAssertEqual(record.keptLayers, plan.keptLayers)
        XCTAssertEqual(record.hiddenKept, plan.hiddenChannels)
        XCTAssertNil(try PruneRecord.read(from: src.checkpoint), "an unpruned model has no record")
        // Formats/prune-record.md's test vector.
        XCTAssertEqual(PruneRecord(plan: plan, spec: s, source: "tiny-llama.gguf", importance: nil).json,
                       #"{"source":"tiny-llama.gguf","method":"random","kept_layers":[1],"hidden":32,"hidden_kept":[0,2,4,6,8,10,12,14,16,18,20,22,24,26,28,30,32,34,36,38,40,42,44,46,48,50,52,54,56,58,60,62],"ffn":44,"heads":2,"heads_kept":[[1,3]]}"#)

        // The HF copy of the same weights, pruned with the same plan.
        let hf = try prune(fixturesPath + "/engine/tiny-llama-hf", plan: { _ in plan }, to: dir + "/p-hf")
        XCTAssertEqual(try PruneRecord.read(from: hf.checkpoint)?.hiddenKept, plan.hiddenChannels)
        let config = try XCTUnwrap(ModelConfig.beside(checkpointPath: dir + "/p-hf"))
        XCTAssertEqual(config.hiddenSize, 32); XCTAssertEqual(config.intermediateSize, 44)
        XCTAssertEqual(config.numAttentionHeads, 2); XCTAssertEqual(config.headDim, 16); XCTAssertEqual(config.numHiddenLayers, 1)
        let tokens: [Int32] = Array("pruned models still run".utf8).map { Int32($0) }
        let a = try logits(out, tokens), b = try logits(hf, tokens)
        XCTAssertEqual(a.count, b.count)
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-4)
    }

    /// Only FFN rows go from a quantized GGUF: the kept rows' bytes are copied as they are;
    /// the down projection loses columns and is requantized to the same type.
    func testQuantizedRowsAreCopiedAndColumnsRequantized() throws {
        let dir = makeTemporaryDirectory()
        let q8 = dir + "/q8.gguf"
        var options = ConversionOptions(target: .gguf)
        options.dtype = .quantized(GGMLType.named("Q8_0")!)
        _ = try Converter(source: openCheckpoint(path: fixturesPath + "/engine/tiny-llama.gguf"), output: q8, options: options).run()
        let src = try DecoderModel(path: q8)
        let keep = Array(stride(from: 0, to: 128, by: 2))
        let plan = PrunePlan(keptLayers: [0, 1], neurons: [keep, keep], heads: [Array(0..<4), Array(0..<4)],
                             hiddenChannels: Array(0..<64), method: .random)
        let out = try prune(q8, plan: { _ in plan }, to: dir + "/p.gguf")
        let g0 = src.tensor(.layer(0, .mlpGate))!, g1 = out.tensor(.layer(0, .mlpGate))!
        XCTAssertEqual(g1.dtype.name, "Q8_0")
        let rowBytes = g0.byteCount / g0.rowCount
        for (r, sr) in keep.enumerated() {
            XCTAssertTrue(sameBytes(g1.bytes[(r * rowBytes)..<((r + 1) * rowBytes)].rebased, g0.bytes[(sr * rowBytes)..<((sr + 1) * rowBytes)].rebased))
        }
        XCTAssertEqual(out.tensor(.layer(0, .mlpDown))!.dtype.name, "Q8_0")
        XCTAssertEqual(out.tensor(.layer(0, .mlpDown))!.shape, [64, 64])
    }

    func testPlannerKeepsGroupsAndRefusesBadTargets() throws {
        let model = try DecoderModel(path: fixturesPath + "/engine/tiny-llama.gguf")
        let plan = try PrunePlanner.plan(model: model, target: PruneTarget(headsPerGroup: 1, layers: 1), method: .random, stats: nil, seed: 3)
        for heads in plan.heads {
            XCTAssertEqual(heads.count, 2)
            XCTAssertTrue((0..<2).contains(heads[0]) && (2..<4).contains(heads[1]), "one head from each KV group, in group order: \(heads)")
        }
        XCTAssertEqual(plan.keptLayers.count, 1)
        XCTAssertThrowsError(try PrunePlanner.plan(model: model, target: PruneTarget(ffn: 128), method: .random, stats: nil)) { e in
            XCTAssertEqual(e as? PruneError, .targetTooLarge(what: "an FFN width of", requested: 128, current: 128))
        }
        XCTAssertThrowsError(try PrunePlanner.plan(model: model, target: PruneTarget(ffn: 64), method: .activation, stats: nil)) { e in
            XCTAssertEqual(e as? PruneError, .needsStatistics(method: "activation"))
        }
        let other = try DecoderModel(path: fixturesPath + "/engine/tiny-qwen2.gguf")
        let stats = try Calibration.run(model: other, samples: [[Int32](repeating: 65, count: 8)], range: 0..<1, batch: 1)
        XCTAssertThrowsError(try PrunePlanner.plan(model: model, target: PruneTarget(ffn: 64), method: .activation, stats: stats)) { e in
            XCTAssertTrue("\(e)".contains("another model"), "\(e)")
        }
        XCTAssertEqual(try PrunePlanner.parseLayers("0,1", layers: 2), [0, 1])
        XCTAssertThrowsError(try PrunePlanner.parseLayers("1-5", layers: 2))
    }

    /// A record that is there but broken is an error naming the key, not "no record".
    func testBrokenPruneRecordIsNamed() throws {
        let dir = makeTemporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let cases = [
            "{": "not JSON",
            "{\"source\": \"m\", \"method\": \"random\", \"kept_layers\": [0, -1], \"hidden\": 4, \"ffn\": 8, \"heads\": 2, \"heads_kept\": [[0], [1]]}": "'kept_layers' holds -1",
            "{\"source\": \"m\", \"method\": \"random\", \"kept_layers\": [0, 1], \"hidden\": 4, \"ffn\": 8, \"heads\": 2, \"heads_kept\": [[0]]}": "'heads_kept' has 1 layers",
            "{\"source\": \"m\", \"method\": \"random\", \"kept_layers\": [0], \"hidden\": 3, \"hidden_kept\": [0, 2], \"ffn\": 8, \"heads\": 2, \"heads_kept\": [[0]]}": "'hidden_kept' lists 2 channels",
        ]
        for (i, (text, reason)) in cases.enumerated() {
            let path = dir + "/m\(i).safetensors"
            writeFile(path, buildSafetensors([SafetensorsTestTensor("w", dtype: "F32", shape: [2], data: floatBytes([1, 2]))],
                                             metadata: [PruneRecord.safetensorsKey: text]))
            XCTAssertThrowsError(try PruneRecord.read(from: openCheckpoint(path: path))) { e in
                guard case let .badMetadata(p, key, why)? = e as? CheckpointError else { return XCTFail("\(e)") }
                XCTAssertEqual(p, path); XCTAssertEqual(key, "ckpt_prune")
                XCTAssertTrue(why.contains(reason), why)
            }
        }
    }
}

extension Slice where Base == UnsafeRawBufferPointer {
    var rebased: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: self) }
}
