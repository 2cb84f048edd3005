/// The text model inside a multimodal HF checkpoint (Gemma 3's
/// `Gemma3ForConditionalGeneration`, and the same layout in others): its tensors carry a
/// `language_model.` prefix (`language_model.model.layers.…` in older transformers,
/// `model.language_model.layers.…` in newer), beside a vision tower and a projector that
/// the decoder does not use.
public enum MultimodalNames {
    /// The plain text-model name (`model.layers.0.…`, `lm_head.weight`) of a prefixed one;
    /// other names unchanged.
    public static func textModelName(_ name: String) -> String {
        for (prefix, replacement) in [("language_model.model.", "model."), ("model.language_model.", "model."),
                                      ("language_model.lm_head.", "lm_head.")] where name.hasPrefix(prefix) {
            return replacement + name.dropFirst(prefix.count)
        }
        return name
    }

    /// A tensor of the vision tower or the multimodal projector.
    public static func isVisionTensor(_ name: String) -> Bool {
        ["vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector.",
         "vision_model.", "multimodal_projector."].contains { name.hasPrefix($0) }
    }
}
