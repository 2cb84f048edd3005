import Basics
import CheckpointIO
import Models
import TestSupport
import XCTest

/// SentencePiece vocabularies against llama.cpp's ids: a BPE model (GGUF `llama`) and a
/// unigram model (GGUF `t5`) trained on the corpus, with llama.cpp's ids for the corpus'
/// first 20 kB, awkward inputs and invalid UTF-8 (Tests/Fixtures/tokenizer/spm/, made by
/// Tools/reference/make_sentencepiece_fixtures.py with llama-cpp-python).
final class SentencePieceTokenizerTests: XCTestCase {
    static let spmDir = fixturesPath + "/tokenizer/spm"

    func files(_ kind: String) throws -> TokenizerFiles {
        let c = try GGUFCheckpoint(path: Self.spmDir + "/spm-\(kind).gguf")
        return try XCTUnwrap(try TokenizerFiles(gguf: c.metadata))
    }

    func tokenizer(_ kind: String) throws -> any Tokenizer {
        let t = try Tokenizers.make(files(kind))
        XCTAssertTrue(t is SentencePieceTokenizer)
        return t
    }

    func json(_ path: String) throws -> JSONValue { try JSONParser.parse(FileSystem.readFile(path)) }

    func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    func ids(_ v: JSONValue?) throws -> [Int32] {
        try XCTUnwrap(v?.arrayValue).map { Int32(try XCTUnwrap($0.nonNegativeInt)) }
    }

    func u16(_ path: String) throws -> [Int32] {
        let raw = try FileSystem.readFile(path)
        return (0..<(raw.count / 2)).map { Int32(UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8) }
    }

    /// Exact match on the corpus head; returns the number of ids compared.
    func checkCorpus(_ kind: String) throws -> Int {
        let t = try tokenizer(kind)
        let fixture = try json(Self.spmDir + "/spm-\(kind).awkward.json")
        let n = try XCTUnwrap(fixture["corpus_bytes"]?.nonNegativeInt)
        let corpus = fixturesPath + "/corpus/train.txt"
        let head = Array(try FileSystem.readFile(corpus).prefix(n))
        let expected = try u16(Self.spmDir + "/spm-\(kind).corpus20k.ids.u16")
        let got = t.encode(String(decoding: head, as: UTF8.self))
        let first = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        XCTAssertNil(first, "\(kind): first difference at token \(first ?? -1)")
        XCTAssertEqual(got.count, expected.count, kind)
        XCTAssertEqual(t.encode(bytes: head), got, "\(kind): the byte API agrees on valid UTF-8")
        return expected.count
    }

    /// Exact match on every awkward case, special off and on; returns the number of cases.
    func checkAwkward(_ t: any Tokenizer, _ cases: [JSONValue], _ label: String) throws -> Int {
        for c in cases {
            let bytes = hex(try XCTUnwrap(c["bytes"]?.stringValue))
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertEqual(t.encode(text, special: false), try ids(c["ids"]), "\(label): \(text.prefix(40).debugDescription)")
            XCTAssertEqual(t.encode(text, special: true), try ids(c["special_ids"]), "\(label), special: \(text.prefix(40).debugDescription)")
        }
        return cases.count
    }

    func testSPMCorpusMatchesLlamaCpp() throws {
        XCTAssertEqual(try checkCorpus("bpe"), 6234)
    }

    func testUnigramCorpusMatchesLlamaCpp() throws {
        XCTAssertEqual(try checkCorpus("unigram"), 4668)
    }

    func testSPMAwkwardInputsMatchLlamaCpp() throws {
        let fixture = try json(Self.spmDir + "/spm-bpe.awkward.json")
        var checked = try checkAwkward(tokenizer("bpe"), try XCTUnwrap(fixture["cases"]?.arrayValue), "spm")
        // The same vocabulary with tokenizer.ggml.add_space_prefix = false.
        var files = try files("bpe")
        files.addSpacePrefix = false
        checked += try checkAwkward(Tokenizers.make(files), try XCTUnwrap(fixture["no_space_prefix_cases"]?.arrayValue), "spm, no space prefix")
        XCTAssertEqual(checked, 78)
    }

    /// GGUF → tokenizer.json → GGUF: the SentencePiece BPE fixture written as HF files and
    /// read back (as `convert` does for HF → GGUF) keeps its pieces, kinds, special ids and
    /// prefix setting, and its scores (made from the merge order) give llama.cpp's ids on
    /// the corpus head and every awkward input, with and without the prefix space.
    func testSPMTokenizerJSONConvertsBackToGGUF() throws {
        let fixture = try json(Self.spmDir + "/spm-bpe.awkward.json")
        let n = try XCTUnwrap(fixture["corpus_bytes"]?.nonNegativeInt)
        let head = String(decoding: try FileSystem.readFile(fixturesPath + "/corpus/train.txt").prefix(n), as: UTF8.self)
        for prefix in [true, false] {
            var original = try files("bpe")
            original.addSpacePrefix = prefix
            let dir = makeTemporaryDirectory()
            writeFile(dir + "/tokenizer.json", original.tokenizerJSON())
            writeFile(dir + "/tokenizer_config.json", original.tokenizerConfigJSON(contextLength: 512))
            let hf = try XCTUnwrap(try TokenizerFiles(hfDirectory: dir))
            let back = try XCTUnwrap(try TokenizerFiles(gguf: hf.ggufMetadata()))
            XCTAssertEqual(back.model, .spm)
            XCTAssertEqual(back.tokens, original.tokens)
            XCTAssertEqual(back.types, original.types)
            XCTAssertEqual(back.addSpacePrefix, prefix)
            XCTAssertEqual([back.bosID, back.eosID, back.unknownID], [1, 2, 0])
            let t = try Tokenizers.make(back)
            XCTAssertTrue(t.addsBOS)
            if prefix {
                let expected = try u16(Self.spmDir + "/spm-bpe.corpus20k.ids.u16")
                let got = t.encode(head)
                let first = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                XCTAssertNil(first, "first difference at token \(first ?? -1)")
                XCTAssertEqual(got.count, expected.count)
            }
            let cases = try XCTUnwrap(fixture[prefix ? "cases" : "no_space_prefix_cases"]?.arrayValue)
            XCTAssertEqual(try checkAwkward(t, cases, "round trip, prefix \(prefix)"), 39)
        }
    }

    func testUnigramAwkwardInputsMatchLlamaCpp() throws {
        let fixture = try json(Self.spmDir + "/spm-unigram.awkward.json")
        XCTAssertEqual(try checkAwkward(tokenizer("unigram"), try XCTUnwrap(fixture["cases"]?.arrayValue), "unigram"), 39)
    }

    /// Invalid UTF-8 through `encode(bytes:)`, for the byte-level BPE model (SmolLM2) and
    /// both SentencePiece fixtures.
    func testInvalidUTF8MatchesLlamaCpp() throws {
        let fixture = try json(fixturesPath + "/tokenizer/invalid-utf8.json")
        let inputs = try XCTUnwrap(fixture["inputs"]?.arrayValue).map { hex($0.stringValue ?? "") }
        let smol = try Tokenizers.make(XCTUnwrap(try TokenizerFiles(gguf: GGUFCheckpoint(path: smolLM2Path).metadata)))
        var checked = 0
        for (name, t) in [("smollm2", smol), ("spm-bpe", try tokenizer("bpe")), ("spm-unigram", try tokenizer("unigram"))] {
            let expected = try XCTUnwrap(fixture["ids"]?[name]?.arrayValue)
            XCTAssertEqual(expected.count, inputs.count)
            for (bytes, e) in zip(inputs, expected) {
                XCTAssertEqual(t.encode(bytes: bytes, special: false), try ids(e["ids"]), "\(name): \(bytes)")
                XCTAssertEqual(t.encode(bytes: bytes, special: true), try ids(e["special_ids"]), "\(name), special: \(bytes)")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 3 * 27)
    }

    /// SPM keeps every byte (byte fallback), so decoding gives the input back, after the
    /// space llama.cpp prefixes, invalid UTF-8 included, up to U+2581 and space: a literal
    /// U+2581 in the input comes back as a space, and an escaped space whose bytes were
    /// swallowed by a truncated UTF-8 sequence's symbol comes back as U+2581 bytes.
    func testSPMBytesRoundTrip() throws {
        let t = try tokenizer("bpe")
        let fixture = try json(Self.spmDir + "/spm-bpe.awkward.json")
        var inputs = try XCTUnwrap(fixture["cases"]?.arrayValue).map { hex($0["bytes"]?.stringValue ?? "") }
        inputs += try XCTUnwrap(json(fixturesPath + "/tokenizer/invalid-utf8.json")["inputs"]?.arrayValue).map { hex($0.stringValue ?? "") }
        var checked = 0
        for bytes in inputs {
            // After a user-defined token the next text gets its own prefix space.
            let text = String(decoding: bytes, as: UTF8.self)
            if text.contains("<user>") || text.contains("<bot>") { continue }
            let back = t.encode(bytes: bytes).flatMap { t.bytes(of: $0) }
            XCTAssertEqual(unescape(back), unescape(bytes.isEmpty ? [] : [0x20] + bytes), "\(bytes)")
            checked += 1
        }
        XCTAssertEqual(checked, 39 + 27 - 2)
        let corpus = fixturesPath + "/corpus/train.txt"
        let head = String(decoding: try FileSystem.readFile(corpus).prefix(20_000), as: UTF8.self)
        XCTAssertEqual(t.decode(t.encode(head)), " " + head)
    }

    /// U+2581 → space.
    func unescape(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            if i + 2 < b.count, b[i] == 0xE2, b[i + 1] == 0x96, b[i + 2] == 0x81 { out.append(0x20); i += 3 } else { out.append(b[i]); i += 1 }
        }
        return out
    }

    func testPiecesOfEachTokenKind() throws {
        let t = try tokenizer("bpe")
        let f = t.files
        func id(_ s: String) throws -> Int32 { Int32(try XCTUnwrap(f.tokens.firstIndex(of: s))) }
        XCTAssertEqual(t.bytes(of: try id("<s>")), [])
        XCTAssertEqual(t.bytes(of: try id("<s>"), special: true), Array("<s>".utf8))
        XCTAssertEqual(t.bytes(of: try id("<unk>")), [])
        XCTAssertEqual(t.bytes(of: try id("<unk>"), special: true), Array("<unk>".utf8))
        XCTAssertEqual(t.bytes(of: try id("<|im_end|>")), [])
        XCTAssertEqual(t.bytes(of: try id("<user>")), Array("<user>".utf8))
        XCTAssertEqual(t.bytes(of: try id("<0x0A>")), [0x0A])
        XCTAssertEqual(t.bytes(of: try id("<0xFF>")), [0xFF])
        XCTAssertEqual(t.bytes(of: try id("▁the")), Array(" the".utf8))
        XCTAssertEqual(t.bytes(of: -1), [])
        XCTAssertEqual(t.bytes(of: Int32(f.tokens.count)), [])
    }

    func testFilesFromGGUF() throws {
        let spm = try files("bpe")
        XCTAssertEqual(spm.model, .spm)
        XCTAssertEqual(spm.tokens.count, 4000)
        XCTAssertEqual(spm.scores.count, 4000)
        XCTAssertEqual(spm.types[0], .unknown)
        XCTAssertEqual(spm.types[1], .control)
        XCTAssertEqual(spm.types.filter { $0 == .byte }.count, 256)
        XCTAssertEqual(spm.types.filter { $0 == .userDefined }.count, 2)
        XCTAssertEqual(spm.bosID, 1)
        XCTAssertEqual(spm.eosID, 2)
        XCTAssertEqual(spm.unknownID, 0)
        XCTAssertNil(spm.addSpacePrefix)
        XCTAssertTrue(try tokenizer("bpe").addsBOS)
        XCTAssertNoThrow(try spm.checkConvertibleToHF(), "SentencePiece BPE converts to tokenizer.json")
        XCTAssertThrowsError(try BPETokenizer(spm))
        // Its merges: every split of a normal piece into two pieces, the best-scored result first.
        let merges = spm.sentencePieceMerges()
        XCTAssertGreaterThan(merges.count, 3000)
        let score = Dictionary(spm.tokens.enumerated().map { ($1, spm.scores[$0]) }, uniquingKeysWith: { a, _ in a })
        let ranked = merges.map { score[$0.0 + $0.1]! }
        XCTAssertEqual(ranked, ranked.sorted(by: >), "merges ranked by the merged piece's score")
        XCTAssertTrue(merges.allSatisfy { score[$0.0] != nil && score[$0.1] != nil })

        let ugm = try files("unigram")
        XCTAssertNoThrow(try ugm.checkConvertibleToHF(), "unigram converts to tokenizer.json")
        let ugmJSON = try JSONParser.parse(ugm.tokenizerJSON())
        XCTAssertEqual(ugmJSON["model"]?["type"]?.stringValue, "Unigram")
        XCTAssertEqual(ugmJSON["model"]?["vocab"]?.arrayValue?.count, 4000)
        XCTAssertEqual(ugmJSON["model"]?["unk_id"]?.nonNegativeInt, 2)
        XCTAssertEqual(ugmJSON["normalizer"]?["normalizers"]?.arrayValue?.first?["type"]?.stringValue, "Precompiled")
        XCTAssertEqual(ugmJSON["pre_tokenizer"]?["split"], .bool(false), "llama.cpp's Viterbi runs over the whole text")
        XCTAssertEqual(ugm.model, .ugm)
        XCTAssertEqual(ugm.addSpacePrefix, true)
        XCTAssertEqual(ugm.removeExtraWhitespaces, true)
        XCTAssertGreaterThan(ugm.precompiledCharsmap.count, 100_000)
        XCTAssertEqual(ugm.eosID, 1)
        XCTAssertEqual(ugm.unknownID, 2)
        XCTAssertNil(ugm.bosID)
        let u = try tokenizer("unigram")
        XCTAssertFalse(u.addsBOS)
        XCTAssertTrue(u.addsEOS)

        // The GGUF keys written back read the same.
        for f in [spm, ugm] {
            XCTAssertEqual(try TokenizerFiles(gguf: f.ggufMetadata()), f)
        }
        // Without the ids in the file, llama.cpp's defaults for the kind.
        let bare = spm.ggufMetadata().filter { !$0.key.hasSuffix("_token_id") }
        let defaults = try XCTUnwrap(try TokenizerFiles(gguf: bare))
        XCTAssertEqual([defaults.bosID, defaults.eosID, defaults.unknownID, defaults.paddingID], [1, 2, 0, nil])
    }
}
