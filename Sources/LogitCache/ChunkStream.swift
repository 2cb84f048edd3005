import Basics
import TensorMath
#if canImport(Glibc)
import Glibc
#endif

/// Reads a cache's chunks in order or shuffled (whole chunks, seeded), decoding the next
/// one on a background thread while the caller works on the current one. At most two
/// decoded chunks are held at once, whatever the cache's size.
public final class ChunkStream: @unchecked Sendable {
    public enum Order: Sendable, Equatable {
        case sequential
        /// A permutation of the chunks from a SplitMix64 stream seeded with `seed`.
        case shuffled(seed: UInt64)
    }

    public let reader: LogitCacheReader
    /// The chunk indices in the order they are handed out.
    public let order: [Int]
    private var next = 0
    private var ready: Result<LogitChunk, any Error>?
    private var pending = false
    private var stopping = false
    private var worker = pthread_t()
    private var mutex = pthread_mutex_t()
    private var changed = pthread_cond_t()
    private var wanted = -1

    public init(reader: LogitCacheReader, order: Order = .sequential, prefetch: Bool = true) {
        self.reader = reader
        var o = Array(reader.chunks.indices)
        if case let .shuffled(seed) = order {
            var rng = SplitMix64(seed: seed)
            rng.shuffle(&o)
        }
        self.order = o
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&changed, nil)
        if prefetch && !o.isEmpty {
            let me = Unmanaged.passRetained(self).toOpaque()
            pthread_create(&worker, nil, { arg in
                let s = Unmanaged<ChunkStream>.fromOpaque(arg!).takeRetainedValue()
                s.work()
                return nil
            }, me)
            request(0)
        }
    }

    deinit {
        pthread_cond_destroy(&changed)
        pthread_mutex_destroy(&mutex)
    }

    private var prefetching: Bool { worker != pthread_t() }

    private func request(_ k: Int) {
        pthread_mutex_lock(&mutex)
        wanted = k < order.count ? k : -1
        pending = wanted >= 0
        pthread_cond_broadcast(&changed)
        pthread_mutex_unlock(&mutex)
    }

    private func work() {
        pthread_mutex_lock(&mutex)
        while true {
            while wanted < 0 && !stopping { pthread_cond_wait(&changed, &mutex) }
            if stopping { break }
            let k = wanted
            wanted = -1
            pthread_mutex_unlock(&mutex)
            let r = Result { try reader.chunk(order[k]) }
            pthread_mutex_lock(&mutex)
            ready = r
            pending = false
            pthread_cond_broadcast(&changed)
        }
        pthread_mutex_unlock(&mutex)
    }

    /// The next chunk, or nil after the last. Rethrows a chunk's checksum or decoding error.
    public func nextChunk() throws -> LogitChunk? {
        guard next < order.count else { return nil }
        defer { next += 1 }
        guard prefetching else { return try reader.chunk(order[next]) }
        pthread_mutex_lock(&mutex)
        while pending || ready == nil { pthread_cond_wait(&changed, &mutex) }
        let r = ready!
        ready = nil
        pthread_mutex_unlock(&mutex)
        if next + 1 < order.count { request(next + 1) } else { close() }
        return try r.get()
    }

    /// Stops the background thread (also done by reading to the end).
    public func close() {
        guard prefetching else { return }
        pthread_mutex_lock(&mutex)
        let alreadyStopped = stopping
        stopping = true
        pthread_cond_broadcast(&changed)
        pthread_mutex_unlock(&mutex)
        if !alreadyStopped { pthread_join(worker, nil) }
    }
}
