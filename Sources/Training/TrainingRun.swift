import Basics
#if canImport(Glibc)
import Glibc
#endif
import CheckpointIO
import LogitCache
import Models

/// The policy of one training run around `Distiller.step()`: when to measure held-out
/// perplexity, when to checkpoint, what to log, and when a run has diverged. The CLI only
/// renders what `Distiller.run(_:observer:)` reports.
package struct TrainingRunPolicy: Sendable {
    /// Held-out sequences (BOS, then text tokens), scored every `evalEvery` steps, at the
    /// start and at the last step. Empty: no held-out measurement.
    package var heldOut: [[Int32]] = []
    package var evalEvery = 1
    /// Where `Settings.checkpointEvery` checkpoints go.
    package var checkpointDirectory: String?
    /// A CSV file of one line per step (created, replacing any file there).
    package var logPath: String?
    /// The run stops when more than this many steps were skipped as non-finite and they
    /// are more than half the steps taken: the learning rate is too high to recover.
    package var skippedStepsTolerated = 10

    package init() {}
}

/// What happens during a run, as it happens, for a progress display.
package enum TrainingRunEvent: Sendable {
    /// The points where held-out measures are taken (the start, every `evalEvery` steps,
    /// the last step), reported whether or not there is held-out text: other measures
    /// (a benchmark's accuracy) are taken here too.
    case evaluationPoint(step: Int)
    case heldOut(step: Int, perplexity: Double)
    case skipped(Distiller.StepRecord)
    case step(Distiller.StepRecord, tokensPerSecond: Double)
}

/// A finished run: its curves and counts.
package struct TrainingRunSummary: Sendable {
    package var tokens = 0
    package var first: Distiller.StepRecord?
    package var last: Distiller.StepRecord?
    package var skippedSteps = 0
    /// The training loss per step taken (distillation loss, or cross-entropy when that is
    /// all the run optimises).
    package var loss: [(step: Int, loss: Double)] = []
    package var heldOut: [(step: Int, perplexity: Double)] = []
    package var seconds = 0.0
}

/// The run stopped because too many steps were not finite.
package struct TrainingDiverged: UserFacingError, Sendable {
    package let skipped: Int
    package let steps: Int
    package var description: String {
        "\(skipped) of \(steps) steps had non-finite losses or gradients: the run diverged (a lower learning rate may hold)"
    }
    package var exitCode: ExitCode { .dataError }
}

/// One CSV line per step: the run's log.
private struct StepLog {
    static let header = "step,tokens,kd_loss,ce_loss,lr,grad_norm,skipped,seconds,heldout_ppl,hidden_loss\n"
    let file: OutputFile
    var at = 0
    let hidden: Bool

    init(path: String, hidden: Bool) throws {
        if try FileSystem.kind(of: path) != .missing { unlink(path) }
        file = try OutputFile(creating: path)
        self.hidden = hidden
        try append(Self.header)
    }

    mutating func append(_ text: String) throws {
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { try file.write($0, at: at) }
        at += bytes.count
    }

    mutating func append(_ r: Distiller.StepRecord, heldOut: Double?) throws {
        try append("\(r.step),\(r.tokens),\(r.distillationLoss),\(r.crossEntropy),\(r.learningRate),\(r.gradientNorm),\(r.skipped ? 1 : 0),\(r.seconds),"
            + "\(heldOut.map { "\($0)" } ?? ""),\(hidden ? "\(r.hiddenLoss)" : "")\n")
    }
}

extension Distiller {
    /// Trains to `settings.steps` under `policy`, reporting each event to `observer`.
    package func run(_ policy: TrainingRunPolicy, observer: (TrainingRunEvent) -> Void = { _ in }) throws -> TrainingRunSummary {
        var summary = TrainingRunSummary()
        let total = settings.steps
        func measureHeldOut(_ step: Int) -> Double? {
            observer(.evaluationPoint(step: step))
            guard !policy.heldOut.isEmpty else { return nil }
            let ppl = exp(heldOutLoss(policy.heldOut))
            summary.heldOut.append((step, ppl))
            observer(.heldOut(step: step, perplexity: ppl))
            return ppl
        }
        _ = measureHeldOut(optimizer.step)
        var log = try policy.logPath.map { try StepLog(path: $0, hidden: settings.hidden != nil) }
        let start = monotonicSeconds()
        let startStep = optimizer.step
        let crossEntropyOnly = settings.crossEntropyWeight >= 1
        while optimizer.step < total {
            let r = try step()
            summary.tokens += r.tokens
            if summary.first == nil { summary.first = r }
            summary.last = r
            if r.skipped {
                summary.skippedSteps += 1
                observer(.skipped(r))
                let taken = r.step - startStep
                if summary.skippedSteps > policy.skippedStepsTolerated && summary.skippedSteps * 2 > taken {
                    throw TrainingDiverged(skipped: summary.skippedSteps, steps: taken)
                }
                continue
            }
            summary.loss.append((r.step, crossEntropyOnly ? r.crossEntropy : r.distillationLoss))
            let held = r.step % max(policy.evalEvery, 1) == 0 || r.step == total ? measureHeldOut(r.step) : nil
            try log?.append(r, heldOut: held)
            if settings.checkpointEvery > 0 && r.step % settings.checkpointEvery == 0 && r.step < total, let dir = policy.checkpointDirectory {
                try saveCheckpoint(in: dir)
            }
            CrashPoint.hit("distill step \(r.step)")
            observer(.step(r, tokensPerSecond: Double(summary.tokens) / max(monotonicSeconds() - start, 1e-9)))
        }
        try log?.file.sync()
        try log?.file.close()
        summary.seconds = monotonicSeconds() - start
        return summary
    }
}

extension MemoryPlan {
    /// Bytes of one decoded cache chunk plus a batch's targets.
    package static func cacheDataBytes(_ h: LogitCacheHeader, batch: Int) -> Int {
        let entries: Int
        switch h.encoding {
        case let .topK(k, _, _): entries = k
        case let .sample(draws, _): entries = draws
        }
        return (h.sequencesPerChunk + batch) * h.sequenceLength * (24 + 8 * entries)
    }

    /// Bytes a live teacher run takes: one layer's weights as stored, a batch's
    /// activations, and the hidden states kept for the loss.
    package static func teacherRunBytes(_ t: DecoderModel, batch: Int, tokens: Int, pairs: Int) -> Int {
        let s = t.spec
        var layer = 0
        for l in 0..<s.layers {
            layer = max(layer, LayerTensor.allCases.compactMap { t.tensor(.layer(l, $0))?.byteCount }.reduce(0, +))
        }
        let rows = batch * tokens
        return layer + 4 * rows * (4 * s.hidden + 3 * s.qDim + 2 * s.kvDim + 3 * s.ffn) + 4 * rows * s.hidden * pairs
    }
}
