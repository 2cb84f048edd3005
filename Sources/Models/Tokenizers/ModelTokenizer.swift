import CheckpointIO

extension BPETokenizer {
    /// The tokenizer a model carries: GGUF `tokenizer.ggml.*` fields, or `tokenizer.json`
    /// beside HF safetensors (or in the directory given). Errors name the model path.
    public static func forModel(path: String) throws -> BPETokenizer {
        let files: TokenizerFiles?
        do {
            if try FileSystem.kind(of: path) == .directory {
                files = try TokenizerFiles(hfDirectory: path)
            } else if path.hasSuffix(".gguf") {
                files = try TokenizerFiles(gguf: openCheckpoint(path: path).metadata)
            } else {
                files = try TokenizerFiles(hfDirectory: FileSystem.checkpointDirectory(path))
            }
            guard let files else { throw CheckpointError.unsupported(path: path, reason: "it carries no tokenizer") }
            return try BPETokenizer(files)
        } catch let e as TokenizerFiles.Unsupported {
            throw CheckpointError.unsupported(path: path, reason: e.description)
        }
    }

    /// Whether llama.cpp prepends BOS when tokenizing for this model (`add_bos_token`;
    /// byte-level BPE vocabularies default to no).
    public var addsBOS: Bool { files.addBOS ?? false }
}
