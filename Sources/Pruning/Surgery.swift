import Basics
import CheckpointIO
import Conversion
import Models

/// Turns a `PrunePlan` into a rewrite of the checkpoint: which rows and columns of which
/// tensors stay, how layers are renumbered, and the metadata of the new shape. The
/// rewrite itself is `Converter`'s (streamed by blocks of rows, staged, published
/// atomically, or in place under the journal).
package enum Surgery {
    /// `record` is written into the output's metadata (scratch models of the search go without).
    package static func edit(model: DecoderModel, plan: PrunePlan, record: PruneRecord?) throws -> CheckpointEdit {
        let s = model.spec, arch = model.architecture, ckpt = model.checkpoint
        let gguf = ckpt.format == .gguf
        let hiddenPruned = plan.hiddenChannels.count != s.hidden
        let hidden: [Int]? = hiddenPruned ? plan.hiddenChannels : nil
        var edit = CheckpointEdit()
        let newIndex = Dictionary(uniqueKeysWithValues: plan.keptLayers.enumerated().map { ($1, $0) })
        func headRows(_ heads: [Int]) -> [Int] { heads.flatMap { h in (h * s.headDim)..<((h + 1) * s.headDim) } }
        for t in ckpt.tensors {
            guard let role = gguf ? arch.role(ggufName: t.name) : arch.role(hfName: t.name) else { continue }
            switch role {
            case let .expert(i, x, part):
                // HF's one tensor per expert: kept experts are renumbered, their neurons cut.
                guard let j = newIndex[i], let k = plan.keptLayers.firstIndex(of: i), let ne = plan.experts[k].firstIndex(of: x) else {
                    edit.tensors[t.name] = TensorEdit(drop: true)
                    continue
                }
                let neurons = plan.expertNeurons[k][ne].count == s.ffn ? nil : plan.expertNeurons[k][ne]
                let name = arch.hfName(.expert(j, ne, part)) ?? t.name
                var e = TensorEdit(name: name == t.name ? nil : name)
                if part == .mlpDown { e.rows = hidden; e.columns = neurons } else { e.rows = neurons; e.columns = hidden }
                if e != TensorEdit() { edit.tensors[t.name] = e }
            case .embed, .lmHead, .finalNorm, .finalNormBias:
                if hiddenPruned { edit.tensors[t.name] = TensorEdit(columns: hidden) }
            case let .layer(i, part):
                guard let j = newIndex[i] else {
                    edit.tensors[t.name] = TensorEdit(drop: true)
                    continue
                }
                let k = plan.keptLayers.firstIndex(of: i)!
                let name = (gguf ? arch.ggufName(.layer(j, part)) : arch.hfName(.layer(j, part))) ?? t.name
                let neurons = plan.neurons[k].count == s.ffn ? nil : plan.neurons[k]
                let qRows = plan.heads[k].count == s.heads ? nil : headRows(plan.heads[k])
                var e = TensorEdit(name: name == t.name ? nil : name)
                switch part {
                case .attnNorm, .mlpNorm, .postAttnNorm, .postMlpNorm, .attnNormBias, .mlpNormBias, .attnOutputBias, .mlpDownBias:
                    e.columns = hidden
                case .attnQ: e.rows = qRows; e.columns = hidden
                case .attnQBias: e.columns = qRows
                case .attnK, .attnV: e.columns = hidden
                case .attnKBias, .attnVBias, .attnQNorm, .attnKNorm: break
                case .attnOutput: e.rows = hidden; e.columns = qRows
                case .mlpGate, .mlpUp: e.rows = neurons; e.columns = hidden
                case .mlpDown: e.rows = hidden; e.columns = neurons
                case .mlpUpBias: e.columns = neurons
                case .attnQKV:
                    // q rows (pruned by head), then every k and v row.
                    e.rows = qRows.map { $0 + Array(s.qDim..<(s.qDim + 2 * s.kvDim)) }
                    e.columns = hidden
                case .mlpGateUp:
                    // The kept neurons' gate rows, then the same neurons' up rows.
                    e.rows = neurons.map { $0 + $0.map { s.ffn + $0 } }
                    e.columns = hidden
                case .moeRouter:
                    e.rows = plan.experts[k].count == s.experts ? nil : plan.experts[k]
                    e.columns = hidden
                case .expertsGate, .expertsUp, .expertsDown:
                    // GGUF's stacked [experts, rows, cols]: the kept experts, each with its own neurons.
                    let changed = plan.experts[k].count != s.experts || hiddenPruned || plan.expertNeurons[k].contains { $0.count != s.ffn }
                    if changed {
                        e.slices = zip(plan.experts[k], plan.expertNeurons[k]).map { x, n in
                            let neurons = n.count == s.ffn ? nil : n
                            return part == .expertsDown ? SliceEdit(source: x, rows: hidden, columns: neurons) : SliceEdit(source: x, rows: neurons, columns: hidden)
                        }
                    }
                case .sharedGate, .sharedUp, .sharedRouter: e.columns = hidden
                case .sharedDown: e.rows = hidden
                }
                if e != TensorEdit() { edit.tensors[t.name] = e }
            }
        }
        let newHeads = plan.heads.first?.count ?? s.heads
        let newFFN = plan.ffn ?? s.ffn
        // A mixture's expert width has its own key where the family has a dense width too (qwen MoE).
        let expertWidthKey = model.config.moeIntermediateSize != nil
        let newExperts = plan.expertCount ?? s.experts, newUsed = min(s.expertsUsed, newExperts)
        if gguf {
            let a = arch.ggufName
            func u32(_ key: String, _ v: Int) -> MetadataEntry { MetadataEntry(key: "\(a).\(key)", value: .uint32(UInt32(v))) }
            edit.ggufMetadata = [
                u32("block_count", plan.keptLayers.count), u32("embedding_length", plan.hiddenChannels.count),
                u32(expertWidthKey ? "expert_feed_forward_length" : "feed_forward_length", newFFN), u32("attention.head_count", newHeads),
                u32("attention.head_count_kv", s.kvHeads), u32("attention.key_length", s.headDim),
                u32("attention.value_length", s.headDim), u32("rope.dimension_count", s.ropeDims),
            ]
            if s.isMixtureOfExperts { edit.ggufMetadata += [u32("expert_count", newExperts), u32("expert_used_count", newUsed)] }
            if let record { edit.ggufMetadata.append(MetadataEntry(key: PruneRecord.ggufKey, value: .string(record.json))) }
            let keptTypes = s.slidingLayers.isEmpty ? nil
                : plan.keptLayers.map { s.slidingLayers.contains($0) ? "sliding_attention" : "full_attention" }
            if let entry = ModelConfig.slidingPatternEntry(architecture: arch, layerTypes: keptTypes) { edit.ggufMetadata.append(entry) }
        } else {
            let dir = try FileSystem.checkpointDirectory(ckpt.path)
            let path = FileSystem.join(dir, "config.json")
            let json = try JSONParser.parse(FileSystem.readFile(path, limit: 16 << 20))
            var replacements: [String: JSONValue] = [
                "hidden_size": .number(String(plan.hiddenChannels.count)),
                expertWidthKey ? "moe_intermediate_size" : "intermediate_size": .number(String(newFFN)),
                "num_attention_heads": .number(String(newHeads)), "num_key_value_heads": .number(String(s.kvHeads)),
                "head_dim": .number(String(s.headDim)), "num_hidden_layers": .number(String(plan.keptLayers.count)),
            ]
            if s.isMixtureOfExperts {
                replacements[model.config.numLocalExperts != nil ? "num_local_experts" : "num_experts"] = .number(String(newExperts))
                replacements["num_experts_per_tok"] = .number(String(newUsed))
            }
            if let types = model.config.layerTypes, types.count == s.layers {
                replacements["layer_types"] = .array(plan.keptLayers.map { .string(types[$0]) })
            } else if !s.slidingLayers.isEmpty {
                // A fixed period (gemma's sliding_window_pattern) no longer fits the kept layers: list them.
                replacements["layer_types"] = .array(plan.keptLayers.map { .string(s.slidingLayers.contains($0) ? "sliding_attention" : "full_attention") })
            }
            edit.files = [("config.json", Array((serialize(json, replacing: replacements) + "\n").utf8))]
            if let record { edit.safetensorsMetadata = [(PruneRecord.safetensorsKey, record.json)] }
        }
        return edit
    }

    /// `json` with top-level keys replaced (or added), keeping order and every other field.
    static func serialize(_ json: JSONValue, replacing: [String: JSONValue]) -> String {
        guard case var .object(fields) = json else { return "{}" }
        var seen = Set<String>()
        for i in fields.indices where replacing[fields[i].key] != nil {
            fields[i].value = replacing[fields[i].key]!
            seen.insert(fields[i].key)
        }
        for (k, v) in replacing.sorted(by: { $0.key < $1.key }) where !seen.contains(k) { fields.append((k, v)) }
        var w = JSONWriter(pretty: true)
        write(.object(fields), to: &w, key: nil)
        return w.text
    }

    static func write(_ v: JSONValue, to w: inout JSONWriter, key: String?) {
        switch v {
        case let .object(fields):
            w.beginObject(key: key)
            for f in fields { write(f.value, to: &w, key: f.key) }
            w.endObject()
        case let .array(items):
            w.beginArray(key: key)
            for item in items { write(item, to: &w, key: nil) }
            w.endArray()
        case let .string(s): w.string(s, key: key)
        case let .number(n): w.raw(n, key: key)
        case let .bool(b): w.bool(b, key: key)
        case .null: w.null(key: key)
        }
    }
}
