import Basics
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

    /// SentencePiece tokenizer.json files llama.cpp has no equivalent for are refused by
    /// name (convert then warns and writes no tokenizer), and the Metaspace forms it has are
    /// read as the prefix setting they mean.
    func testSentencePieceTokenizerJSONForms() throws {
        func read(pre: String, normalizer: String = "null") throws -> TokenizerFiles? {
            let dir = makeTemporaryDirectory()
            let json = #"{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"<unk>": 0, "▁a": 1, "a": 2}, "merges": []}, "normalizer": "#
                + normalizer + #", "pre_tokenizer": "# + pre + "}"
            writeFile(dir + "/tokenizer.json", Array(json.utf8))
            return try TokenizerFiles(hfDirectory: dir)
        }
        let replace = #"{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}"#
        for (pre, normalizer, message) in [(#"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}"#, "null", "splits the text"),
                                           (#"{"type": "Whitespace"}"#, replace, "'Whitespace' pre-tokenizer")] {
            XCTAssertThrowsError(try read(pre: pre, normalizer: normalizer)) { e in
                XCTAssertTrue(e is TokenizerFiles.Unsupported && "\(e)".contains(message), "\(e)")
            }
        }
        let first = try XCTUnwrap(try read(pre: #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}"#))
        XCTAssertEqual(first.model, .spm)
        XCTAssertEqual(first.addSpacePrefix, true)
        let never = try XCTUnwrap(try read(pre: #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}"#))
        XCTAssertEqual(never.addSpacePrefix, false)
    }

    func testRoundTripThroughTokenizerJSON() throws {
        for pre in ["gpt-2", "smollm", "llama-bpe", "qwen2", "tekken"] {
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
