import CheckpointIO
import Models
import TestSupport
import XCTest

final class TokenizerFilesTests: XCTestCase {
    func sample(pre: String, addBOS: Bool?) -> TokenizerFiles {
        TokenizerFiles(tokens: ["<s>", "</s>", "a", "b", "ab", "Ġ"], types: [.control, .control, .normal, .normal, .normal, .normal],
                       merges: ["a b"], pre: pre, bosID: 0, eosID: 1, addBOS: addBOS, chatTemplate: "{{ x }}")
    }

    func roundTrip(_ t: TokenizerFiles) throws -> TokenizerFiles {
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/tokenizer.json", t.tokenizerJSON())
        writeFile(dir + "/tokenizer_config.json", t.tokenizerConfigJSON(contextLength: 128))
        return try XCTUnwrap(try TokenizerFiles(hfDirectory: dir))
    }

    func testRoundTripThroughTokenizerJSON() throws {
        for pre in ["gpt2", "smollm", "llama-bpe", "qwen2"] {
            for addBOS: Bool? in [true, false, nil] {
                let t = sample(pre: pre, addBOS: addBOS)
                let back = try roundTrip(t)
                XCTAssertEqual(back.tokens, t.tokens, pre)
                XCTAssertEqual(back.types, t.types, pre)
                XCTAssertEqual(back.merges, t.merges, pre)
                XCTAssertEqual(back.pre, pre)
                XCTAssertEqual(back.bosID, 0)
                XCTAssertEqual(back.eosID, 1)
                XCTAssertEqual(back.addBOS, addBOS, "\(pre), add_bos \(String(describing: addBOS))")
                XCTAssertEqual(back.chatTemplate, "{{ x }}")
            }
        }
        let json = String(decoding: sample(pre: "llama-bpe", addBOS: true).tokenizerJSON(), as: UTF8.self)
        XCTAssertTrue(json.contains("\"TemplateProcessing\""), "BOS is added by the post-processor")
        XCTAssertTrue(json.contains("\"ignore_merges\":true"), "llama-bpe looks up whole words first")
    }

    func testQwenStyleTrimOffsetsStillMatches() throws {
        let dir = makeTemporaryDirectory()
        var text = String(decoding: sample(pre: "qwen2", addBOS: nil).tokenizerJSON(), as: UTF8.self)
        text = text.split(separator: "\"trim_offsets\":true", omittingEmptySubsequences: false).joined(separator: "\"trim_offsets\":false")
        writeFile(dir + "/tokenizer.json", Array(text.utf8))
        XCTAssertEqual(try TokenizerFiles(hfDirectory: dir)?.pre, "qwen2")
    }

    func testPaddingToTheEmbeddingAndUnknownPreTokenizer() throws {
        var t = sample(pre: "gpt2", addBOS: nil)
        t.pad(to: 9)
        XCTAssertEqual(t.tokens.suffix(3), ["[PAD6]", "[PAD7]", "[PAD8]"])
        XCTAssertEqual(t.types.last, .unused)
        let dir = makeTemporaryDirectory()
        writeFile(dir + "/tokenizer.json", Array(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Whitespace"}}"#.utf8))
        XCTAssertThrowsError(try TokenizerFiles(hfDirectory: dir)) { e in
            XCTAssertTrue("\(e)".contains("matches none that llama.cpp names"), "\(e)")
        }
    }
}
