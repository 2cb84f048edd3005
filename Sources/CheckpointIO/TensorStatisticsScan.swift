extension TensorStatistics {
    /// Statistics of each tensor (`inspect --stats`), streamed through a fixed f32 buffer
    /// a block of rows at a time, dropping the pages behind: resident memory stays about
    /// one buffer, whatever the model's size. nil for a tensor whose type cannot be decoded. `progress` hears (tensors done,
    /// bytes done) as the scan goes.
    public static func scan(_ tensors: [TensorView], bufferElements: Int = 1 << 20,
                            progress: (_ tensors: Int, _ bytes: Int) -> Void = { _, _ in }) throws -> [TensorStatistics?] {
        // At least one block of the largest type, so a long row splits into whole blocks.
        let bufferElements = Swift.max(bufferElements, GGMLType.all.map(\.blockSize).max() ?? 256)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: bufferElements)
        defer { buffer.deallocate() }
        var bytesDone = 0
        var results: [TensorStatistics?] = []
        for (i, t) in tensors.enumerated() {
            defer {
                bytesDone += t.byteCount
                progress(i + 1, bytesDone)
            }
            guard TensorDecoder.canDecode(t.dtype), t.elementCount > 0 else {
                results.append(t.elementCount == 0 ? TensorStatistics() : nil)
                continue
            }
            var s = TensorStatistics()
            let rowLength = t.rowLength
            try? t.file.advise(.sequential, range: t.offset..<(t.offset + t.byteCount))
            if rowLength > bufferElements {
                // A single enormous row (a 1-D tensor): decode it in whole-block pieces.
                try scanLongRow(t, buffer: buffer, capacity: bufferElements, into: &s) { bytes in
                    progress(i, bytesDone + bytes)
                }
            } else {
                let rowsPerChunk = Swift.max(1, bufferElements / Swift.max(rowLength, 1))
                let rowBytes = t.byteCount / Swift.max(t.rowCount, 1)
                var row = 0
                while row < t.rowCount {
                    let end = Swift.min(t.rowCount, row + rowsPerChunk)
                    try TensorDecoder.decodeRows(t, rows: row..<end, into: buffer)
                    s.add(buffer, count: (end - row) * rowLength)
                    // Drop the pages just read, so resident memory stays one chunk however
                    // large the tensor (a 15B model's embedding is 1.5 GB).
                    try? t.file.advise(.dontNeed, range: (t.offset + row * rowBytes)..<(t.offset + end * rowBytes))
                    row = end
                    progress(i, bytesDone + row * rowBytes)
                }
            }
            try? t.file.advise(.dontNeed, range: t.offset..<(t.offset + t.byteCount))
            results.append(s)
        }
        return results
    }

    private static func scanLongRow(_ t: TensorView, buffer: UnsafeMutablePointer<Float>, capacity: Int,
                                       into s: inout TensorStatistics, progress: (Int) -> Void) throws {
        // Reinterpret the row as many shorter rows of a block-aligned length.
        let block: Int
        switch t.dtype {
        case let .gguf(g): block = g.blockSize
        case let .safetensors(d): block = d.bits % 8 == 0 ? 1 : 8
        }
        let piece = (capacity / block) * block
        let view = TensorView(name: t.name, dtype: t.dtype, shape: [t.elementCount / piece, piece], file: t.file,
                              offset: t.offset, byteCount: t.dtype.byteCount(elements: (t.elementCount / piece) * piece)!)
        let pieceBytes = view.byteCount / Swift.max(view.rowCount, 1)
        for r in 0..<view.rowCount {
            try TensorDecoder.decodeRows(view, rows: r..<(r + 1), into: buffer)
            s.add(buffer, count: piece)
            try? t.file.advise(.dontNeed, range: (t.offset + r * pieceBytes)..<(t.offset + (r + 1) * pieceBytes))
            progress((r + 1) * pieceBytes)
        }
        let rest = t.elementCount - view.rowCount * piece
        if rest > 0 {
            let tail = TensorView(name: t.name, dtype: t.dtype, shape: [rest], file: t.file,
                                  offset: t.offset + view.byteCount, byteCount: t.byteCount - view.byteCount)
            try TensorDecoder.decodeRows(tail, rows: 0..<1, into: buffer)
            s.add(buffer, count: rest)
        }
    }
}
