import Basics
import Models

/// Minitron's lightweight architecture search: candidate shapes (depth and width
/// combinations) whose parameter count is near a target, to be pruned and ranked by
/// held-out loss.
public enum ArchitectureSearch {
    public struct Candidate: Sendable, Equatable {
        public var target: PruneTarget
        public var parameters: Int
        public var label: String
    }

    /// Up to `limit` shapes within `tolerance` (relative) of `parameters`, closest first.
    /// Widths step by eighths (hidden and FFN rounded to multiples of 64), heads by whole
    /// heads per KV group, depth by single layers down to half the model.
    public static func candidates(spec s: DecoderSpec, tiedHead: Bool, parameters goal: Int, tolerance: Double = 0.05,
                                  limit: Int = 8) -> [Candidate] {
        let perGroup = s.heads / s.kvHeads
        func steps(_ full: Int) -> [Int] {
            Array(Set((4...8).map { max(64, ($0 * full / 8) / 64 * 64) } + [full])).filter { $0 <= full }.sorted()
        }
        var out: [Candidate] = []
        for layers in stride(from: s.layers, through: max(1, s.layers / 2), by: -1) {
            for hidden in steps(s.hidden) {
                for ffn in steps(s.ffn) {
                    for g in 1...perGroup {
                        let plan = PrunePlan(keptLayers: Array(0..<layers), neurons: [[Int]](repeating: Array(0..<ffn), count: layers),
                                             heads: [[Int]](repeating: Array(0..<(g * s.kvHeads)), count: layers),
                                             hiddenChannels: Array(0..<hidden), method: .activation)
                        let n = plan.parameterCount(spec: s, tiedHead: tiedHead)
                        guard abs(Double(n - goal)) <= tolerance * Double(goal) else { continue }
                        let t = PruneTarget(ffn: ffn < s.ffn ? ffn : nil, headsPerGroup: g < perGroup ? g : nil,
                                            hidden: hidden < s.hidden ? hidden : nil, layers: layers < s.layers ? layers : nil)
                        if t == PruneTarget() { continue }
                        out.append(Candidate(target: t, parameters: n,
                                             label: "layers \(layers), hidden \(hidden), ffn \(ffn), heads \(g * s.kvHeads)"))
                    }
                }
            }
        }
        // Closest to the goal first; among equals prefer deeper, then wider hidden (Minitron: width over depth).
        out.sort { a, b in
            let da = abs(a.parameters - goal), db = abs(b.parameters - goal)
            return da != db ? da < db : a.label < b.label
        }
        // Spread the picks over depths so the table compares depth against width.
        var picked: [Candidate] = [], seenLayers: [Int: Int] = [:]
        for c in out {
            let l = c.target.layers ?? s.layers
            if seenLayers[l, default: 0] >= 2 { continue }
            seenLayers[l, default: 0] += 1
            picked.append(c)
            if picked.count == limit { break }
        }
        return picked
    }
}
