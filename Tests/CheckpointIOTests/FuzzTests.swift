import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import Foundation
import TestSupport
import XCTest

/// Mutates real headers (byte flips, truncations, length fields set to extremes,
/// insertions, deletions) and checks that every result is either parsed into views
/// that stay inside the file, or refused with a `CheckpointError`. A trap would kill
/// the test process, so "zero crashes" is the test passing at all.
///
/// `CKPT_FUZZ_CASES` sets the number of cases (default 4000 here;
/// `Tools/fuzz_headers.sh` runs 100,000 in a release build).
final class FuzzTests: XCTestCase {
    struct Seed {
        let name: String
        let bytes: [UInt8]
        let isGGUF: Bool
        /// Offsets worth mutating more often (headers, length fields).
        let hotRegions: [Range<Int>]
    }

    static func seeds() throws -> [Seed] {
        var seeds: [Seed] = []
        let sample = GGUFTests.sampleBuilder().build()
        seeds.append(Seed(name: "sample.gguf", bytes: sample, isGGUF: true, hotRegions: [0..<sample.count]))

        let real = try GGUFFile(file: MappedFile(path: smolLM2Path))
        let header = Array(real.file.bytes[0..<real.dataStart])
        // The header's first 4 KiB (counts, general.*, llama.*) and the tensor infos at its end.
        seeds.append(Seed(name: "smollm2-header.gguf", bytes: header, isGGUF: true,
                          hotRegions: [0..<4096, (header.count - 16384)..<header.count]))

        let allDTypes = try FileSystem.readFile(fixturesPath + "/all-dtypes.safetensors")
        seeds.append(Seed(name: "all-dtypes.safetensors", bytes: allDTypes, isGGUF: false, hotRegions: [0..<allDTypes.count]))

        // A 15B-shaped shard header (data absent): exercises the JSON and range checks at scale.
        var tensors: [SafetensorsTestTensor] = []
        var offset = 0
        for i in 0..<6 {
            for (n, shape) in [("q_proj", [5120, 5120]), ("k_proj", [1024, 5120]), ("mlp.down_proj", [5120, 13824])] {
                let bytes = shape.reduce(2, *)
                tensors.append(SafetensorsTestTensor("model.layers.\(i).\(n).weight", dtype: "BF16", shape: shape, data: [],
                                                     offsetsJSON: "[\(offset),\(offset + bytes)]"))
                offset += bytes
            }
        }
        let big = buildSafetensors(tensors, metadata: ["format": "pt"])
        seeds.append(Seed(name: "15b-shard-header.safetensors", bytes: big, isGGUF: false, hotRegions: [0..<big.count]))
        return seeds
    }

    static let extremes: [UInt64] = [0, 1, 0x7F, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 32, 1 << 60, UInt64(Int64.max), UInt64.max]

    static func mutate(_ seed: Seed, _ rng: inout SplitMix64) -> [UInt8] {
        var b = seed.bytes
        func position() -> Int {
            if rng.below(4) < 3, let region = seed.hotRegions.randomElement(using: &rng) {
                return region.lowerBound + rng.below(region.count)
            }
            return rng.below(b.count)
        }
        let rounds = 1 + rng.below(3)
        for _ in 0..<rounds where !b.isEmpty {
            switch rng.below(7) {
            case 0, 1: // flip a few bytes
                for _ in 0..<(1 + rng.below(8)) { b[position() % b.count] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2: // truncate
                b.removeSubrange(rng.below(b.count)...)
            case 3: // an extreme 64-bit value
                let p = position()
                if p + 8 <= b.count {
                    let v = extremes[rng.below(extremes.count)]
                    withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(p..<(p + 8), with: $0) }
                }
            case 4: // an extreme 32-bit value
                let p = position()
                if p + 4 <= b.count {
                    let v = UInt32(truncatingIfNeeded: extremes[rng.below(extremes.count)])
                    withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(p..<(p + 4), with: $0) }
                }
            case 5: // insert random bytes
                let p = position() % (b.count + 1)
                b.insert(contentsOf: (0..<(1 + rng.below(16))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: p)
            default: // delete a range
                let p = position() % b.count
                b.removeSubrange(p..<min(b.count, p + 1 + rng.below(32)))
            }
        }
        return b
    }

    /// Parses `bytes`; on success touches every view and metadata array.
    static func exercise(_ bytes: [UInt8], isGGUF: Bool) -> Bool {
        let file = MappedFile(copying: bytes, label: "fuzz")
        do {
            let tensors: [TensorView]
            let metadata: [MetadataEntry]
            if isGGUF {
                let g = try GGUFFile(file: file)
                tensors = g.tensors
                metadata = g.metadata
            } else {
                let s = try SafetensorsFile(file: file)
                tensors = s.tensors
                metadata = s.metadata
            }
            var sink: UInt8 = 0
            for t in tensors where t.byteCount > 0 {
                let raw = t.bytes
                sink ^= raw[0] ^ raw[raw.count - 1]
                if TensorDecoder.canDecode(t.dtype), t.rowLength <= 4096, t.rowCount > 0 {
                    var row = [Float](repeating: 0, count: t.rowLength)
                    try row.withUnsafeMutableBufferPointer { try TensorDecoder.decodeRows(t, rows: 0..<1, into: $0.baseAddress!) }
                }
            }
            for e in metadata { if case let .array(a) = e.value { _ = a.values().count } }
            _ = sink
            return true
        } catch is CheckpointError {
            return false
        } catch {
            XCTFail("unexpected error type: \(error)")
            return false
        }
    }

    func testMutatedHeadersNeverCrash() throws {
        let total = Int(ProcessInfo.processInfo.environment["CKPT_FUZZ_CASES"] ?? "") ?? 4000
        let seeds = try Self.seeds()
        var rng = SplitMix64(seed: UInt64(ProcessInfo.processInfo.environment["CKPT_FUZZ_SEED"] ?? "") ?? 0xC0FFEE)
        var accepted = 0
        let start = Date()
        for i in 0..<total {
            let seed = seeds[i % seeds.count]
            if Self.exercise(Self.mutate(seed, &rng), isGGUF: seed.isGGUF) { accepted += 1 }
        }
        // Unmutated seeds must parse (the safetensors 15B header has no data, so it must not).
        XCTAssertTrue(Self.exercise(seeds[0].bytes, isGGUF: true))
        XCTAssertTrue(Self.exercise(seeds[2].bytes, isGGUF: false))
        XCTAssertFalse(Self.exercise(seeds[3].bytes, isGGUF: false))
        print("fuzz: \(total) cases over \(seeds.count) seeds, \(accepted) accepted, \(total - accepted) refused with an error, 0 crashes (\(Int(Date().timeIntervalSince(start))) s)")
    }
}
