import Basics
import TensorMath

/// Reads a cache's chunks in order or shuffled (whole chunks, seeded), decoding the next
/// one on a background thread while the caller works on the current one. At most two
/// decoded chunks are held at once, whatever the cache's size.
package final class ChunkStream: @unchecked Sendable {
    package enum Order: Sendable, Equatable {
        case sequential
        /// A permutation of the chunks from a SplitMix64 stream seeded with `seed`.
        case shuffled(seed: UInt64)
    }

    package let reader: LogitCacheReader
    /// The chunk indices in the order they are handed out.
    package let order: [Int]
    private var next = 0
    private var ready: Result<LogitChunk, any Error>?
    private var pending = false
    private var stopping = false
    private var worker: WorkerThread?
    private let monitor = Monitor()
    private var wanted = -1

    package init(reader: LogitCacheReader, order: Order = .sequential, prefetch: Bool = true) {
        self.reader = reader
        var o = Array(reader.chunks.indices)
        if case let .shuffled(seed) = order {
            var rng = SplitMix64(seed: seed)
            rng.shuffle(&o)
        }
        self.order = o
        // Without a thread (the system refused one) chunks are decoded when asked for:
        // slower, never wrong.
        if prefetch && !o.isEmpty, let t = try? WorkerThread(purpose: "reading logit chunks ahead", { [self] in work() }) {
            worker = t
            request(0)
        }
    }

    private var prefetching: Bool { worker != nil }

    private func request(_ k: Int) {
        monitor.withLock {
            wanted = k < order.count ? k : -1
            pending = wanted >= 0
            monitor.broadcast()
        }
    }

    private func work() {
        monitor.lock()
        defer { monitor.unlock() }
        while true {
            while wanted < 0 && !stopping { monitor.wait() }
            if stopping { return }
            let k = wanted
            wanted = -1
            monitor.unlock()
            let r = Result { try reader.chunk(order[k]) }
            monitor.lock()
            ready = r
            pending = false
            monitor.broadcast()
        }
    }

    /// The next chunk, or nil after the last. Rethrows a chunk's checksum or decoding error.
    package func nextChunk() throws -> LogitChunk? {
        guard next < order.count else { return nil }
        defer { next += 1 }
        guard prefetching else { return try reader.chunk(order[next]) }
        let r: Result<LogitChunk, any Error> = monitor.withLock {
            while pending || ready == nil { monitor.wait() }
            defer { ready = nil }
            return ready!
        }
        if next + 1 < order.count { request(next + 1) } else { close() }
        return try r.get()
    }

    /// Stops the background thread (also done by reading to the end).
    package func close() {
        guard prefetching else { return }
        let alreadyStopped = monitor.withLock {
            defer { stopping = true; monitor.broadcast() }
            return stopping
        }
        if !alreadyStopped { worker?.join() }
    }
}
