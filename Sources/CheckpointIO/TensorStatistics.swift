import CKernels

/// Summary statistics of a tensor's values, accumulated chunk by chunk so a tensor
/// of any size streams through a fixed buffer. Mergeable (Chan et al.'s parallel
/// variance), so chunks or shards can be combined in any grouping.
public struct TensorStatistics: Sendable, Equatable {
    /// Finite values seen.
    public private(set) var count: Int = 0
    public private(set) var nanCount: Int = 0
    public private(set) var infCount: Int = 0
    /// Over finite values; nil until one is seen.
    public private(set) var min: Double?
    public private(set) var max: Double?
    public private(set) var mean: Double = 0
    /// Sum of squared deviations from the mean.
    private var m2: Double = 0

    public init() {}

    /// Population standard deviation of the finite values (0 when fewer than one).
    public var standardDeviation: Double { count > 0 ? (m2 / Double(count)).squareRoot() : 0 }

    /// Adds `n` values.
    public mutating func add(_ values: UnsafePointer<Float>, count n: Int) {
        var s = ckpt_stats()
        ckpt_stats_f32(values, Int64(n), &s)
        var chunk = TensorStatistics()
        chunk.count = Int(s.count)
        chunk.nanCount = Int(s.nan_count)
        chunk.infCount = Int(s.inf_count)
        if s.count > 0 {
            chunk.min = s.min
            chunk.max = s.max
            chunk.mean = s.mean
            chunk.m2 = s.m2
        }
        merge(chunk)
    }

    public mutating func add(_ values: [Float]) {
        values.withUnsafeBufferPointer { b in
            if let p = b.baseAddress { add(p, count: b.count) }
        }
    }

    /// Folds another summary into this one.
    public mutating func merge(_ other: TensorStatistics) {
        nanCount += other.nanCount
        infCount += other.infCount
        guard other.count > 0 else { return }
        if count == 0 {
            count = other.count; mean = other.mean; m2 = other.m2; min = other.min; max = other.max
            return
        }
        let n = Double(count), m = Double(other.count)
        let delta = other.mean - mean
        let total = n + m
        mean += delta * m / total
        m2 += other.m2 + delta * delta * n * m / total
        count += other.count
        if let o = other.min { min = Swift.min(min ?? o, o) }
        if let o = other.max { max = Swift.max(max ?? o, o) }
    }
}
