import Basics
import Models

/// A multiple-choice benchmark scored by log-likelihood, as lm-evaluation-harness scores
/// MMLU: `acc` picks the choice of highest summed log-probability, `acc_norm` the highest
/// per character of the continuation.
package enum MultipleChoiceEval {
    package struct Settings: Sendable {
        package var format: PromptFormat = .mcf
        package var shots = 0
        /// Score the first `limit` questions (nil: all).
        package var limit: Int?
        /// Score every `every`-th question (0, every, 2·every, …): a subset spread over a file
        /// sorted by subject. Examples still come from the whole file; `limit` counts the
        /// questions scored.
        package var every = 1

        package init(format: PromptFormat = .mcf, shots: Int = 0, limit: Int? = nil, every: Int = 1) {
            self.format = format
            self.shots = shots
            self.limit = limit
            self.every = every
        }

        /// The indices of the questions scored out of `count`: every `every`-th, the first `limit` of those.
        package func questions(in count: Int) -> [Int] {
            Array(stride(from: 0, to: count, by: max(1, every)).prefix(limit ?? Int.max))
        }
    }

    /// One question's outcome.
    package struct Answer: Sendable, Equatable {
        package var index: Int
        package var choice: Int
        package var choiceNorm: Int
        package var logliks: [Double]
        package var correct: Int
        package var shots: Int
    }

    /// A mean over questions and its standard error (sample standard deviation / √n, as
    /// lm-evaluation-harness's `mean_stderr`).
    package struct Score: Sendable, Equatable {
        package var n: Int
        package var acc: Double, accStderr: Double
        package var accNorm: Double, accNormStderr: Double

        init(_ answers: [Answer]) {
            n = answers.count
            func mean(_ hits: [Bool]) -> (Double, Double) {
                let n = Double(hits.count)
                guard n > 0 else { return (0, 0) }
                let m = Double(hits.filter { $0 }.count) / n
                guard n > 1 else { return (m, 0) }
                let variance = hits.reduce(0) { $0 + (($1 ? 1 : 0) - m) * (($1 ? 1 : 0) - m) } / (n - 1)
                return (m, (variance / n).squareRoot())
            }
            (acc, accStderr) = mean(answers.map { $0.choice == $0.correct })
            (accNorm, accNormStderr) = mean(answers.map { $0.choiceNorm == $0.correct })
        }
    }

    package struct Result: Sendable {
        package var answers: [Answer]
        package var overall: Score
        /// Per subject, in the order subjects first appear.
        package var subjects: [(subject: String, score: Score)]
        package var seconds: Double
        /// Questions whose few-shot examples were cut to fit the model's context.
        package var shortened: Int
    }

    /// Scores `task` with the model behind `scorer`; `progress` hears questions done.
    package static func run(_ task: MultipleChoiceTask, scorer: any ContinuationScorer, settings: Settings,
                            progress: (Int, Int) -> Void = { _, _ in }) throws -> Result {
        let picked = settings.questions(in: task.questions.count)
        let count = picked.count
        let context = scorer.contextLength
        let t0 = monotonicSeconds()
        // Prompts first (cheap): every problem in the file is found before the model runs.
        var requests: [ChoiceScorer.Request] = [], used: [Int] = []
        var shortened = 0
        for i in picked {
            var examples = try task.examples(for: i, shots: settings.shots)
            while true {
                let p = task.prompt(i, format: settings.format, examples: examples)
                let r = scorer.request(context: p.context, continuations: p.continuations)
                // The longest continuation's last token is never fed.
                let length = r.context.count + (r.continuations.map(\.count).max() ?? 1) - 1
                if length <= context {
                    requests.append(r)
                    used.append(examples.count)
                    break
                }
                if examples.isEmpty { throw TaskError.promptTooLong(path: task.path, line: task.lines[i], tokens: length, context: context) }
                examples.removeFirst()  // the farthest example goes first
                if examples.count == settings.shots - 1 { shortened += 1 }
            }
        }
        let logliks = try scorer.score(requests) { progress($0, count) }
        var answers: [Answer] = []
        for (k, i) in picked.enumerated() {
            let q = task.questions[i], l = logliks[k]
            let conts = MultipleChoiceTask.continuations(q, format: settings.format)
            let norm = l.indices.map { l[$0] / Double(max(conts[$0].unicodeScalars.count, 1)) }
            answers.append(Answer(index: i, choice: argmax(l), choiceNorm: argmax(norm), logliks: l, correct: q.answer, shots: used[k]))
        }
        var order: [String] = [], bySubject: [String: [Answer]] = [:]
        for a in answers {
            let subject = task.questions[a.index].subject
            if bySubject[subject] == nil { order.append(subject) }
            bySubject[subject, default: []].append(a)
        }
        return Result(answers: answers, overall: Score(answers), subjects: order.map { ($0, Score(bySubject[$0]!)) },
                      seconds: monotonicSeconds() - t0, shortened: shortened)
    }

    /// The first index of the largest value (numpy's argmax, which lm-evaluation-harness uses).
    static func argmax(_ v: [Double]) -> Int {
        var best = 0
        for i in v.indices where v[i] > v[best] { best = i }
        return best
    }
}
