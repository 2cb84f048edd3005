import Basics
import CKernels
import CheckpointIO
@testable import LogitCache
import Models
import TensorMath
import TestSupport
import XCTest

/// The logit cache on a real (tiny) llama GGUF: records against the engine's own logits,
/// corruption, resume after a crash at any byte, shards and merge, bad input.
final class LogitCacheTests: XCTestCase {
    static let modelPath = fixturesPath + "/engine/tiny-llama.gguf"

    override func tearDown() { ckpt_set_kernel_level(Int32(CKPT_LEVEL_AVX512)) }

    struct Setup {
        let model: DecoderModel
        let tokenizer: any Tokenizer
        let text: TeacherText
    }

    func setup(seq: Int = 24) throws -> Setup {
        let model = try DecoderModel(path: Self.modelPath)
        let tokenizer = try Tokenizers.forModel(path: Self.modelPath)
        let bytes = try FileSystem.readFile(FileSystem.join(repositoryRoot, "Formats/logit-cache.md"))
        var h = FNV1a64()
        h.add(bytes)
        let tokens = tokenizer.encode(bytes: bytes, special: false)
        return Setup(model: model, tokenizer: tokenizer, text: TeacherText(tokens: tokens, length: seq, bos: 1, identity: h.hex))
    }

    func settings(_ encoding: LogitEncoding, sequences: Int = 10, perChunk: Int = 3, shard: (Int, Int)? = nil) -> TeacherPass.Settings {
        var s = TeacherPass.Settings(encoding: encoding, sequencesPerChunk: perChunk, batch: 2)
        s.maxSequences = sequences
        s.shard = shard
        return s
    }

    @discardableResult
    func build(_ s: Setup, _ settings: TeacherPass.Settings, to path: String) throws -> TeacherPass.Report {
        try TeacherPass.build(stream: LayerStream(model: s.model), tokenizer: s.tokenizer, text: s.text, settings: settings, output: path)
    }

    func allChunks(_ path: String) throws -> [LogitChunk] {
        let r = try LogitCacheReader(path: path)
        return try (0..<r.chunks.count).map { try r.chunk($0) }
    }

    // MARK: records against the engine

    func testTopKRecordsAreTheEnginesTopKWithinTheStatedQuantization() throws {
        let s = try setup()
        let dir = makeTemporaryDirectory()
        let path = dir + "/t.cache"
        let k = 8, step = 0.125, tailStep = 1.0 / 1024
        try build(s, settings(.topK(k: k, logprobStep: step, tailStep: tailStep)), to: path)
        let stream = LayerStream(model: s.model)
        let V = s.model.spec.vocab
        var checked = 0
        for chunk in try allChunks(path) {
            for (si, n) in chunk.sequenceLengths.enumerated() {
                let seq = s.text.sequence(chunk.firstSequence + si)
                XCTAssertEqual(n, seq.count)
                let start = chunk.sequenceStarts[si]
                XCTAssertEqual(Array(chunk.tokens[start..<(start + n)]), seq)
                var logits = [Float]()
                try stream.run([seq], outputs: { _ in 0..<seq.count }) { _, _, rows in logits += rows }
                for p in 0..<n {
                    let row = logits[(p * V)..<((p + 1) * V)].map(Double.init)
                    let m = row.max()!
                    let lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
                    let ranked = (0..<V).sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
                    let e = chunk.entries(start + p)
                    XCTAssertEqual(chunk.ids[e].map(Int.init), ranked[0..<k].sorted(), "seq \(chunk.firstSequence + si) pos \(p)")
                    var kept = 0.0
                    for i in e {
                        let exact = row[Int(chunk.ids[i])] - lse
                        kept += exp(exact)
                        XCTAssertLessThanOrEqual(abs(Double(chunk.logprobs[i]) - exact), step / 2 + 1e-4)
                    }
                    XCTAssertLessThanOrEqual(abs(Double(chunk.tailLogprobs[start + p]) - log(1 - kept)), tailStep / 2 + 1e-3)
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, 10 * 24)
    }

    func testTopKKernelMatchesASortOnBothPaths() throws {
        var rng = SplitMix64(seed: 7)
        let rows = 5, V = 1000, k = 16
        var logits = [Float](repeating: 0, count: rows * V)
        for i in logits.indices { logits[i] = Float(Int(rng.next() % 2000)) / 100 - 10 }  // ties happen
        var results: [[Int32]] = []
        for level in [CKPT_LEVEL_SCALAR, CKPT_LEVEL_AVX2] {
            ckpt_set_kernel_level(Int32(level))
            var ids = [Int32](repeating: 0, count: rows * k), lps = [Float](repeating: 0, count: rows * k), tails = [Double](repeating: 0, count: rows)
            let scratch = FloatBuffer(count: ThreadPool.threads * V)
            ckpt_topk_logprobs(logits, Int64(rows), Int64(V), Int32(k), 1 / 0.7, &ids, &lps, &tails, scratch.pointer)
            for r in 0..<rows {
                let row = logits[(r * V)..<((r + 1) * V)].map { Double($0) / 0.7 }
                let m = row.max()!
                let lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
                let ranked = (0..<V).sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
                XCTAssertEqual(ids[(r * k)..<((r + 1) * k)].map(Int.init), Array(ranked[0..<k]))
                var kept = 0.0
                for j in 0..<k {
                    XCTAssertEqual(Double(lps[r * k + j]), row[ranked[j]] - lse, accuracy: 1e-5)
                    kept += exp(row[ranked[j]] - lse)
                }
                XCTAssertEqual(tails[r], log(1 - kept), accuracy: 1e-5)
            }
            results.append(ids)
        }
        XCTAssertEqual(results[0], results[1])
    }

    func testDrawsAreReproducibleAndFollowTheDistribution() throws {
        let V = 6, rows = 400, draws = 500
        let base: [Float] = [2.0, 1.0, 0.5, 0.0, -1.0, -30.0]
        let logits = (0..<rows).flatMap { _ in base }
        let seeds = (0..<rows).map { TeacherPass.rowSeed(42, sequence: 0, position: $0) }
        func run() -> ([Int32], [Int32], [Int32]) {
            var ids = [Int32](repeating: 0, count: rows * draws), counts = ids, unique = [Int32](repeating: 0, count: rows)
            var uniforms = [Double](repeating: 0, count: ThreadPool.threads * draws)
            let scratch = FloatBuffer(count: ThreadPool.threads * V)
            ckpt_sample_ids(logits, Int64(rows), Int64(V), 1, Int32(draws), seeds, &ids, &counts, &unique, scratch.pointer, &uniforms)
            return (ids, counts, unique)
        }
        let (ids, counts, unique) = run()
        let again = run()
        XCTAssertEqual(ids, again.0)
        XCTAssertEqual(counts, again.1)
        var total = [Double](repeating: 0, count: V)
        for r in 0..<rows {
            var sum = 0
            for j in 0..<Int(unique[r]) {
                total[Int(ids[r * draws + j])] += Double(counts[r * draws + j])
                sum += Int(counts[r * draws + j])
                if j > 0 { XCTAssertLessThan(ids[r * draws + j - 1], ids[r * draws + j]) }
            }
            XCTAssertEqual(sum, draws)
        }
        let z = base.reduce(0.0) { $0 + exp(Double($1)) }
        let n = Double(rows * draws)
        for v in 0..<V {
            let p = exp(Double(base[v])) / z
            let sigma = (n * p * (1 - p)).squareRoot()
            XCTAssertLessThan(abs(total[v] - n * p), 4 * sigma + 1, "id \(v): \(total[v]) draws, expected \(n * p)")
        }
    }

    func testCRC32CKnownValuesOnBothPaths() {
        let digits = Array("123456789".utf8)
        var data = [UInt8](repeating: 0, count: 1000)
        var rng = SplitMix64(seed: 3)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: rng.next()) }
        var seen: [UInt32] = []
        for level in [CKPT_LEVEL_SCALAR, CKPT_LEVEL_AVX2] {
            ckpt_set_kernel_level(Int32(level))
            XCTAssertEqual(ckpt_crc32c(0, digits, 9), 0xE306_9283)
            XCTAssertEqual(ckpt_crc32c(0, [UInt8](repeating: 0, count: 32), 32), 0x8A91_36AA)  // RFC 3720 B.4
            // Incremental equals one pass, at every split.
            let whole = ckpt_crc32c(0, data, Int64(data.count))
            for cut in stride(from: 0, through: data.count, by: 37) {
                let a = data.withUnsafeBytes { ckpt_crc32c(0, $0.baseAddress, Int64(cut)) }
                let b = data.withUnsafeBytes { ckpt_crc32c(a, $0.baseAddress! + cut, Int64(data.count - cut)) }
                XCTAssertEqual(b, whole)
            }
            seen.append(whole)
        }
        XCTAssertEqual(seen[0], seen[1])
    }

    func testPayloadRoundTripsBothEncodings() throws {
        var rng = SplitMix64(seed: 11)
        let V = 50_000
        for encoding in [LogitEncoding.topK(k: 5), .sample(draws: 9, seed: 0)] {
            var c = LogitChunk(firstSequence: 7)
            c.sequenceLengths = [3, 4]
            for _ in 0..<7 {
                c.tokens.append(Int32(rng.next() % UInt64(V)))
                let n: Int
                if case .topK = encoding { n = 5 } else { n = 1 + Int(rng.next() % 5) }
                var ids = Set<Int32>()
                while ids.count < n { ids.insert(Int32(rng.next() % 300) * (rng.next() % 4 == 0 ? 160 : 1)) }
                var left = 9
                for (j, id) in ids.sorted().enumerated() {
                    c.ids.append(id)
                    if case .topK = encoding {
                        c.logprobs.append(-Float(rng.next() % 256) * 0.125)
                    } else {
                        let take = j == n - 1 ? left : 1 + Int(rng.next() % UInt64(left - (n - 1 - j)))
                        c.counts.append(Int32(take))
                        left -= take
                    }
                }
                c.entryStart.append(c.ids.count)
                if case .topK = encoding { c.tailLogprobs.append(rng.next() % 5 == 0 ? -.infinity : -Float(rng.next() % 60000) / 1024) }
            }
            let raw = ChunkPayload.encode(c, encoding: encoding, vocab: V)
            let back = try ChunkPayload.decode(raw, firstSequence: 7, sequences: 2, records: 7, encoding: encoding, vocab: V)
            XCTAssertEqual(back, c, "\(encoding)")
        }
    }

    // MARK: file integrity

    func testEveryFlippedByteIsDetected() throws {
        let s = try setup(seq: 8)
        let dir = makeTemporaryDirectory()
        let path = dir + "/t.cache"
        try build(s, settings(.topK(k: 4), sequences: 4, perChunk: 2), to: path)
        let good = try FileSystem.readFile(path)
        XCTAssertNil(try LogitCacheTools.checkIntegrity(path: path).problem)
        var rng = SplitMix64(seed: 5)
        for offset in good.indices {
            var bad = good
            bad[offset] ^= UInt8(1 + rng.next() % 255)
            let p = dir + "/flip.cache"
            unlink(p)
            writeFile(p, bad)
            var detected = false
            do {
                detected = try LogitCacheTools.checkIntegrity(path: p).problem != nil
            } catch { detected = true }
            XCTAssertTrue(detected, "flipping byte \(offset) of \(good.count) went unnoticed by verify")
            // The reader refuses too, when asked for every chunk.
            var readerNoticed = false
            do { _ = try allChunks(p) } catch { readerNoticed = true }
            XCTAssertTrue(readerNoticed, "flipping byte \(offset) went unnoticed by the reader")
        }
    }

    func testResumeAfterACutAtAnyByteEqualsAnUninterruptedBuild() throws {
        let s = try setup(seq: 8)
        let dir = makeTemporaryDirectory()
        let whole = dir + "/whole.cache"
        let set = settings(.sample(draws: 16, seed: 3), sequences: 7, perChunk: 2)
        try build(s, set, to: whole)
        let good = try FileSystem.readFile(whole)
        let r = try LogitCacheReader(path: whole)
        var cuts = Set(stride(from: 0, to: good.count, by: max(1, good.count / 40)))
        for c in r.chunks { cuts.formUnion([c.offset, c.offset + 1, c.end - 1, c.end]) }
        cuts.insert(r.dataStart)
        for cut in cuts.sorted() where cut <= good.count {
            let out = dir + "/cut-\(cut).cache"
            writeFile(out + ".partial", Array(good[0..<cut]))
            let report = try build(s, set, to: out)
            XCTAssertEqual(try FileSystem.readFile(out), good, "resumed from a cut at byte \(cut)")
            XCTAssertEqual(try FileSystem.kind(of: out + ".partial"), .missing)
            if cut >= r.chunks[1].end { XCTAssertGreaterThanOrEqual(report.resumedAfter, 2, "cut \(cut) kept its complete chunks") }
        }
        // A complete cache is left alone.
        XCTAssertTrue(try build(s, set, to: whole).alreadyComplete)
    }

    func testShardsMergeIntoTheUnshardedCache() throws {
        let s = try setup(seq: 12)
        let dir = makeTemporaryDirectory()
        for (sequences, shards) in [(10, 4), (5, 4)] {
            let set = settings(.topK(k: 6), sequences: sequences, perChunk: 2)
            let whole = dir + "/whole-\(sequences).cache"
            try build(s, set, to: whole)
            var parts: [String] = []
            for i in 0..<shards {
                var sh = set
                sh.shard = (i, shards)
                let p = dir + "/shard-\(sequences)-\(i).cache"
                try build(s, sh, to: p)
                parts.append(p)
            }
            let merged = dir + "/merged-\(sequences).cache"
            _ = try LogitCacheTools.merge(parts.reversed(), output: merged)
            XCTAssertEqual(try FileSystem.readFile(merged), try FileSystem.readFile(whole), "\(sequences) sequences in \(shards) shards")
        }
    }

    func testMergeRefusesOtherSettingsOverlapsAndGaps() throws {
        let s = try setup(seq: 12)
        let dir = makeTemporaryDirectory()
        var a = settings(.topK(k: 6), sequences: 6, perChunk: 2)
        a.shard = (0, 3)
        var b = a
        b.shard = (1, 3)
        b.encoding = .topK(k: 7)
        var c = a
        c.shard = (2, 3)
        try build(s, a, to: dir + "/a.cache")
        try build(s, b, to: dir + "/b.cache")
        try build(s, c, to: dir + "/c.cache")
        XCTAssertThrowsError(try LogitCacheTools.merge([dir + "/a.cache", dir + "/b.cache"], output: dir + "/m1.cache")) {
            XCTAssertTrue("\($0)".contains("encoding"), "\($0)")
        }
        XCTAssertThrowsError(try LogitCacheTools.merge([dir + "/a.cache", dir + "/a.cache"], output: dir + "/m2.cache")) {
            XCTAssertTrue("\($0)".contains("overlap"), "\($0)")
        }
        XCTAssertThrowsError(try LogitCacheTools.merge([dir + "/a.cache", dir + "/c.cache"], output: dir + "/m3.cache")) {
            XCTAssertTrue("\($0)".contains("gap"), "\($0)")
        }
        for m in ["m1", "m2", "m3"] { XCTAssertEqual(try FileSystem.kind(of: dir + "/\(m).cache"), .missing) }
        XCTAssertEqual(try FileSystem.list(directory: dir).filter { $0.contains("ckpt-tmp") }, [])
    }

    // MARK: bad input

    func testBadSettingsAndFilesGiveClearErrors() throws {
        let s = try setup()
        let dir = makeTemporaryDirectory()
        XCTAssertThrowsError(try build(s, settings(.topK(k: 257)), to: dir + "/k.cache")) {
            XCTAssertEqual($0 as? LogitCacheError, .badSettings("top-257 is more ids than the vocabulary has (256)"))
        }
        let empty = Setup(model: s.model, tokenizer: s.tokenizer, text: TeacherText(tokens: [], length: 24, bos: 1, identity: "0"))
        XCTAssertThrowsError(try build(empty, settings(.topK(k: 4)), to: dir + "/e.cache")) {
            XCTAssertTrue("\($0)".contains("no tokens"), "\($0)")
        }
        for name in ["k", "e"] {
            XCTAssertEqual(try FileSystem.kind(of: dir + "/\(name).cache"), .missing)
            XCTAssertEqual(try FileSystem.kind(of: dir + "/\(name).cache.partial"), .missing)
        }
        // An existing file that is not this cache is never overwritten.
        writeFile(dir + "/x.cache", Array("precious".utf8))
        XCTAssertThrowsError(try build(s, settings(.topK(k: 4)), to: dir + "/x.cache")) { XCTAssertTrue("\($0)".contains("already exists"), "\($0)") }
        XCTAssertEqual(try FileSystem.readFile(dir + "/x.cache"), Array("precious".utf8))
        // A partial build with other settings is not silently mixed in.
        try build(s, settings(.topK(k: 4), sequences: 3), to: dir + "/p.cache")
        try FileSystem.rename(dir + "/p.cache", dir + "/q.cache.partial")
        XCTAssertThrowsError(try build(s, settings(.topK(k: 5), sequences: 3), to: dir + "/q.cache")) {
            XCTAssertTrue("\($0)".contains("encoding"), "\($0)")
        }
        // A cache cut before its index says it is unfinished and how to finish it.
        try build(s, settings(.topK(k: 4), sequences: 3), to: dir + "/t.cache")
        let bytes = try FileSystem.readFile(dir + "/t.cache")
        writeFile(dir + "/cut.cache", Array(bytes.dropLast(3)))
        XCTAssertThrowsError(try LogitCacheReader(path: dir + "/cut.cache")) { XCTAssertTrue("\($0)".contains("resume"), "\($0)") }
    }

    func testRandomAccessBySequence() throws {
        let s = try setup(seq: 10)
        let dir = makeTemporaryDirectory()
        try build(s, settings(.sample(draws: 8, seed: 1), sequences: 11, perChunk: 3), to: dir + "/t.cache")
        let r = try LogitCacheReader(path: dir + "/t.cache")
        XCTAssertEqual(r.chunks.count, 4)
        for seq in 0..<11 {
            let c = try r.chunk(XCTUnwrap(r.chunkIndex(forSequence: seq)))
            let i = seq - c.firstSequence
            let start = c.sequenceStarts[i]
            XCTAssertEqual(Array(c.tokens[start..<(start + c.sequenceLengths[i])]), s.text.sequence(seq))
        }
        XCTAssertNil(r.chunkIndex(forSequence: 11))
    }
}

/// Chunks streamed in order and shuffled, with and without the prefetch thread.
final class ChunkStreamTests: XCTestCase {
    func testStreamsEveryChunkOnceInTheAskedOrder() throws {
        let path = fixturesPath + "/logits/tiny-sample.cache"
        let reader = try LogitCacheReader(path: path)
        let direct = try (0..<reader.chunks.count).map { try reader.chunk($0) }
        for prefetch in [false, true] {
            let s = ChunkStream(reader: reader, order: .sequential, prefetch: prefetch)
            var got: [LogitChunk] = []
            while let c = try s.nextChunk() { got.append(c) }
            XCTAssertEqual(got, direct)
            let shuffled = ChunkStream(reader: reader, order: .shuffled(seed: 9), prefetch: prefetch)
            XCTAssertEqual(shuffled.order.sorted(), Array(0..<reader.chunks.count))
            XCTAssertNotEqual(shuffled.order, Array(0..<reader.chunks.count))
            var seen: [LogitChunk] = []
            while let c = try shuffled.nextChunk() { seen.append(c) }
            XCTAssertEqual(seen, shuffled.order.map { direct[$0] })
            XCTAssertEqual(ChunkStream(reader: reader, order: .shuffled(seed: 9), prefetch: false).order, shuffled.order)
        }
        // Closing early stops the thread.
        let early = ChunkStream(reader: reader)
        _ = try early.nextChunk()
        early.close()
    }
}
