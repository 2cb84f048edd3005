import Basics
import CheckpointIO
import Models

/// What `ckpt prune` records in the checkpoint it writes: where the model came from and
/// what of it was kept, so `ckpt distill` can pair the student's layers and hidden
/// channels with the teacher's. One line of JSON under the GGUF key `ckpt.prune` or the
/// safetensors `__metadata__` key `ckpt_prune`; see Formats/prune-record.md.
package struct PruneRecord: Sendable, Equatable {
    package static let ggufKey = "ckpt.prune"
    package static let safetensorsKey = "ckpt_prune"

    /// The source model's path and identity.
    package var source: String
    /// The importance file's path and calibration identity, when one was used.
    package var importance: String?
    package var method: String
    /// Teacher layer of each student layer, in order.
    package var keptLayers: [Int]
    package var hidden: Int
    /// Teacher hidden channel of each student channel; nil when all were kept.
    package var hiddenKept: [Int]?
    package var ffn: Int
    package var heads: Int
    /// Teacher query heads kept, per student layer.
    package var headsKept: [[Int]]
    /// A mixture of experts: routed experts per layer, and the teacher experts kept, per student layer.
    package var experts: Int?
    package var expertsKept: [[Int]]?

    package init(plan: PrunePlan, spec s: DecoderSpec, source: String, importance: String?) {
        self.source = source
        self.importance = importance
        method = plan.method.rawValue
        keptLayers = plan.keptLayers
        hidden = plan.hiddenChannels.count
        hiddenKept = plan.hiddenChannels.count < s.hidden ? plan.hiddenChannels : nil
        ffn = plan.ffn ?? s.ffn
        heads = plan.heads.first?.count ?? s.heads
        headsKept = plan.heads
        if s.isMixtureOfExperts {
            experts = plan.expertCount ?? s.experts
            expertsKept = plan.experts
        }
    }

    /// The record as one line of JSON (also what `prune --dry-run --json` prints).
    package var json: String {
        func ints(_ a: [Int]) -> String { "[" + a.map(String.init).joined(separator: ",") + "]" }
        var w = JSONWriter()
        w.beginObject()
        w.string(source, key: "source")
        if let importance { w.string(importance, key: "importance") }
        w.string(method, key: "method")
        w.raw(ints(keptLayers), key: "kept_layers")
        w.int(hidden, key: "hidden")
        if let hiddenKept { w.raw(ints(hiddenKept), key: "hidden_kept") }
        w.int(ffn, key: "ffn")
        w.int(heads, key: "heads")
        w.beginArray(key: "heads_kept")
        for h in headsKept { w.raw(ints(h)) }
        w.endArray()
        if let experts, let expertsKept {
            w.int(experts, key: "experts")
            w.beginArray(key: "experts_kept")
            for e in expertsKept { w.raw(ints(e)) }
            w.endArray()
        }
        w.endObject()
        return w.text
    }

    /// The record of a pruned checkpoint; nil when it has none (it was not pruned by
    /// ckpt). A record that is there but unreadable is an error naming the key.
    package static func read(from checkpoint: any Checkpoint) throws -> PruneRecord? {
        let key = checkpoint.format == .gguf ? ggufKey : safetensorsKey
        guard let entry = checkpoint.metadata.first(where: { $0.key == key }) else { return nil }
        func bad(_ reason: String) -> CheckpointError { .badMetadata(path: checkpoint.path, key: key, reason: reason) }
        guard let text = entry.value.stringValue else { throw bad("not a string") }
        let json: JSONValue
        do { json = try JSONParser.parse(Array(text.utf8)) } catch { throw bad("not JSON: \(error)") }
        func int(_ k: String) throws -> Int {
            guard let v = json[k]?.nonNegativeInt else { throw bad("'\(k)' is not a non-negative integer") }
            return v
        }
        func ints(_ v: JSONValue?, _ k: String) throws -> [Int] {
            guard let items = v?.arrayValue else { throw bad("'\(k)' is not a list") }
            return try items.map { guard let i = $0.nonNegativeInt else { throw bad("'\(k)' holds \(jsonText($0))") }; return i }
        }
        guard let source = json["source"]?.stringValue, let method = json["method"]?.stringValue else {
            throw bad("'source' or 'method' is missing")
        }
        var r = PruneRecord(source: source, importance: json["importance"]?.stringValue, method: method,
                            keptLayers: try ints(json["kept_layers"], "kept_layers"), hidden: try int("hidden"),
                            hiddenKept: nil, ffn: try int("ffn"), heads: try int("heads"), headsKept: [])
        if json["hidden_kept"] != nil { r.hiddenKept = try ints(json["hidden_kept"], "hidden_kept") }
        guard let perLayer = json["heads_kept"]?.arrayValue else { throw bad("'heads_kept' is not a list") }
        r.headsKept = try perLayer.map { try ints($0, "heads_kept") }
        if json["experts"] != nil || json["experts_kept"] != nil {
            r.experts = try int("experts")
            guard let kept = json["experts_kept"]?.arrayValue else { throw bad("'experts_kept' is not a list") }
            r.expertsKept = try kept.map { try ints($0, "experts_kept") }
            if r.expertsKept!.count != r.keptLayers.count { throw bad("'experts_kept' has \(r.expertsKept!.count) layers, 'kept_layers' \(r.keptLayers.count)") }
            if r.expertsKept!.contains(where: { $0.count != r.experts }) { throw bad("'experts_kept' lists other than \(r.experts!) experts in a layer") }
        }
        if r.hiddenKept.map({ $0.count != r.hidden }) ?? false { throw bad("'hidden_kept' lists \(r.hiddenKept!.count) channels, 'hidden' says \(r.hidden)") }
        if r.headsKept.count != r.keptLayers.count { throw bad("'heads_kept' has \(r.headsKept.count) layers, 'kept_layers' \(r.keptLayers.count)") }
        return r
    }

    init(source: String, importance: String?, method: String, keptLayers: [Int], hidden: Int, hiddenKept: [Int]?,
         ffn: Int, heads: Int, headsKept: [[Int]]) {
        self.source = source; self.importance = importance; self.method = method; self.keptLayers = keptLayers
        self.hidden = hidden; self.hiddenKept = hiddenKept; self.ffn = ffn; self.heads = heads; self.headsKept = headsKept
    }
}
