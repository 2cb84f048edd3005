import Basics
import CheckpointIO
import Models
import TestSupport
import XCTest

/// The engine's tokenizer against llama.cpp's ids (Tests/Fixtures/tokenizer/, made with
/// llama-cpp-python by Tools/reference/make_tokenizer_fixtures.py).
final class BPETokenizerTests: XCTestCase {
    func tokenizer() throws -> BPETokenizer {
        let c = try GGUFCheckpoint(path: smolLM2Path)
        return try BPETokenizer(XCTUnwrap(try TokenizerFiles(gguf: c.metadata)))
    }

    func testAwkwardInputsMatchLlamaCpp() throws {
        let t = try tokenizer()
        let fixture = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/tokenizer/smollm2-awkward.json"))
        var checked = 0
        for case_ in try XCTUnwrap(fixture["cases"]?.arrayValue) where case_["valid_utf8"] == .bool(true) {
            let hex = try XCTUnwrap(case_["bytes"]?.stringValue)
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                bytes.append(UInt8(hex[i..<j], radix: 16)!)
                i = j
            }
            let text = String(decoding: bytes, as: UTF8.self)
            let expected = try XCTUnwrap(case_["ids"]?.arrayValue).compactMap { $0.nonNegativeInt.map(Int32.init) }
            XCTAssertEqual(t.encode(text), expected, "\(text.prefix(40).debugDescription)")
            checked += 1
        }
        XCTAssertEqual(checked, 20)
    }

    func testWholeCorpusMatchesLlamaCpp() throws {
        let t = try tokenizer()
        let corpus = fixturesPath + "/corpus/train.txt"
        let text = String(decoding: try FileSystem.readFile(corpus), as: UTF8.self)
        let raw = try FileSystem.readFile(fixturesPath + "/tokenizer/smollm2-corpus.ids.u16")
        let expected = (0..<(raw.count / 2)).map { Int32(UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8) }
        let ids = t.encode(text)
        let first = zip(ids, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        XCTAssertNil(first, "first difference at token \(first ?? -1)")
        XCTAssertEqual(ids.count, expected.count)
    }
}

/// Llama 3's, Qwen2's and Tekken's pre-tokenizers, checked on SmolLM2's vocabulary against llama.cpp
/// run with tokenizer.ggml.pre overridden (Tools/reference/make_tokenizer_fixtures.py).
final class OtherPreTokenizerTests: XCTestCase {
    func testLlama3AndQwen2RulesMatchLlamaCpp() throws {
        let c = try GGUFCheckpoint(path: smolLM2Path)
        let corpus = fixturesPath + "/corpus/train.txt"
        var head = Array(try FileSystem.readFile(corpus).prefix(300_000))
        while String(validating: head, as: UTF8.self) == nil { head.removeLast() } // as Python's errors="ignore" at the cut
        let text = String(decoding: head, as: UTF8.self)
        for pre in ["llama-bpe", "qwen2", "tekken"] {
            var files = try XCTUnwrap(try TokenizerFiles(gguf: c.metadata))
            files.pre = pre
            let t = try BPETokenizer(files)
            let raw = try FileSystem.readFile(fixturesPath + "/tokenizer/smollm2-as-\(pre).corpus300k.ids.u16")
            let expected = (0..<(raw.count / 2)).map { Int32(UInt16(raw[2 * $0]) | UInt16(raw[2 * $0 + 1]) << 8) }
            let ids = t.encode(text)
            let first = zip(ids, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            XCTAssertNil(first, "\(pre): first difference at token \(first ?? -1)")
            XCTAssertEqual(ids.count, expected.count, pre)
            let awkward = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/tokenizer/smollm2-as-\(pre).awkward.json"))
            for case_ in try XCTUnwrap(awkward["cases"]?.arrayValue) {
                let hex = try XCTUnwrap(case_["bytes"]?.stringValue)
                var bytes: [UInt8] = []
                var i = hex.startIndex
                while i < hex.endIndex { let j = hex.index(i, offsetBy: 2); bytes.append(UInt8(hex[i..<j], radix: 16)!); i = j }
                let s = String(decoding: bytes, as: UTF8.self)
                let want = try XCTUnwrap(case_["ids"]?.arrayValue).compactMap { $0.nonNegativeInt.map(Int32.init) }
                XCTAssertEqual(t.encode(s), want, "\(pre): \(s.prefix(40).debugDescription)")
            }
        }
    }
}
