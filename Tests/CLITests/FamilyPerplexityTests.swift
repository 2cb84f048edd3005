import Basics
import TestSupport
import XCTest

/// Every family's tiny model, as it is and after each kind of pruning and a short
/// distillation, scored by `ckpt eval` against the perplexities llama.cpp and transformers
/// gave for the same files (Tools/reference/check_families.py, which made
/// Tests/Fixtures/engine/families-ppl.json): GGUF with llama.cpp's rounding against
/// llama.cpp, the `ckpt convert` HF copy in f32 against transformers. The pruned and
/// distilled models are rebuilt here with the same arguments, so surgery, conversion and
/// training all stand behind the numbers.
final class FamilyPerplexityTests: XCTestCase {
    struct Case {
        let family, variant: String
        let prune: [String]?
        let llamaCpp: Double?
        let transformers: Double
    }

    func cases() throws -> (ctx: Int, cases: [Case]) {
        let json = try JSONParser.parse(FileSystem.readFile(fixturesPath + "/engine/families-ppl.json"))
        let cases = try XCTUnwrap(json["results"]?.arrayValue).map { r in
            Case(family: r["family"]!.stringValue!, variant: r["variant"]!.stringValue!,
                 prune: r["prune"]?.arrayValue?.map { $0.stringValue! }, llamaCpp: r["llama_cpp_ppl"]?.doubleValue,
                 transformers: r["transformers_ppl"]!.doubleValue!)
        }
        return (json["ctx"]!.nonNegativeInt!, cases)
    }

    func ckpt(_ args: [String]) throws -> String {
        let r = try runCkpt(args)
        XCTAssertEqual(r.status, 0, "ckpt \(args.joined(separator: " ")): \(r.stderr)")
        return r.stdout
    }

    func perplexity(_ model: String, text: String, ctx: Int, f32: Bool) throws -> Double {
        var args = ["eval", "--model", model, "--file", text, "--ctx", String(ctx), "--json", "--threads", "2"]
        if f32 { args.append("--f32-activations") }
        return try XCTUnwrap(JSONParser.parse(Array(ckpt(args).utf8))["ppl"]?.doubleValue)
    }

    func testEveryFamilyAndPruneAxisAgreesWithLlamaCppAndTransformers() throws {
        let (ctx, all) = try cases()
        XCTAssertEqual(Set(all.map(\.family)), ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "nemotron", "phi3", "mixtral", "qwen3moe", "qwen2moe"])
        let dir = makeTemporaryDirectory()
        let text = dir + "/text.txt"
        writeFile(text, Array(try FileSystem.readFile(fixturesPath + "/corpus/train.txt").prefix(4000)))
        var worst = (cpp: 0.0, hf: 0.0)
        for c in all {
            let source = fixturesPath + "/engine/tiny-\(c.family).gguf"
            var model = source
            if c.variant == "distill" {
                model = dir + "/\(c.family)-distill.gguf"
                _ = try ckpt(["logits", "build", "--model", source, "--file", text, "--seq", "64", "-o", dir + "/\(c.family).logits"])
                _ = try ckpt(["distill", "--student", source, "--cache", dir + "/\(c.family).logits", "--steps", "4", "--lr", "1e-3", "-o", model])
            } else if let prune = c.prune {
                model = dir + "/\(c.family)-\(c.variant).gguf"
                _ = try ckpt(["prune", "--model", source, "--method", "magnitude"] + prune + ["-o", model])
            }
            let hf = dir + "/\(c.family)-\(c.variant)-hf"
            _ = try ckpt(["convert", model, hf, "--dtype", "f32"])
            let label = "\(c.family) \(c.variant)"
            if let ref = c.llamaCpp {
                let r = try perplexity(model, text: text, ctx: ctx, f32: false) / ref - 1
                XCTAssertLessThan(abs(r), 1e-4, "\(label): GGUF vs llama.cpp")
                worst.cpp = max(worst.cpp, abs(r))
            }
            let r = try perplexity(hf, text: text, ctx: ctx, f32: true) / c.transformers - 1
            XCTAssertLessThan(abs(r), 1e-4, "\(label): HF vs transformers")
            worst.hf = max(worst.hf, abs(r))
        }
        print("families: \(all.count) models, worst relative ppl difference vs llama.cpp \(worst.cpp), vs transformers \(worst.hf)")
    }
}
