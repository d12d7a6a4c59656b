//! The trained model: an ONNX graph run by tract, plus the labels and
//! feature settings stored in its metadata.

use serde::Deserialize;
use tract_onnx::prelude::*;

use crate::features::{Features, Spec};

/// What a label tags: the product's category or one of its colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One category per product: the category scores sum to 1 (softmax).
    Category,
    /// Any number of colours: each colour has its own score (sigmoid).
    Colour,
}

impl Kind {
    /// The name written into events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Category => "category",
            Kind::Colour => "colour",
        }
    }
}

/// One output of the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Label {
    /// e.g. `dress`, `blue`
    pub name: String,
    /// Category or colour.
    pub kind: Kind,
}

/// The model's `weir.tagger` metadata, written by `train/train.py`.
#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    /// How to compute the input.
    pub spec: Spec,
    /// The outputs, in order.
    pub labels: Vec<Label>,
    /// The figures measured when it was trained, as `train.py` wrote them
    /// (`held_out.category_accuracy`, `held_out.colour_f1`, …).
    #[serde(default)]
    pub evaluation: weir_sdk::serde_json::Value,
}

/// The metadata key the training script writes.
pub const META_KEY: &str = "weir.tagger";

/// A loaded model, ready to score batches.
pub struct Model {
    /// Labels and feature settings.
    pub meta: Meta,
    plan: std::sync::Arc<TypedRunnableModel>,
}

impl Model {
    /// Reads an ONNX model written by `train/train.py`: checks its metadata
    /// and prepares tract's plan. The error says what is wrong with the file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, String> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| format!("not an ONNX model: {e}"))?;
        let meta = proto
            .metadata_props
            .iter()
            .find(|p| p.key == META_KEY)
            .ok_or_else(|| {
                format!("the model has no \"{META_KEY}\" metadata: train it with plugins/ml-tagger/train/train.py")
            })?;
        let meta: Meta = weir_sdk::serde_json::from_str(&meta.value)
            .map_err(|e| format!("the model's \"{META_KEY}\" metadata is malformed: {e}"))?;
        if meta.spec.version != 1 {
            return Err(format!(
                "the model uses feature rules version {}, this plugin knows version 1",
                meta.spec.version
            ));
        }
        if meta.spec.buckets == 0 || meta.spec.max_features == 0 || meta.spec.ngram == 0 {
            return Err("the model's feature settings have a zero bucket count, max_features or ngram".into());
        }
        let plan = onnx
            .model_for_proto_model(&proto)
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(|e| format!("tract cannot run the model: {e:#}"))?;
        let model = Model { meta, plan };
        // One call now, so that a model whose outputs do not match its
        // labels is refused in `init`, not on the first event.
        let scores = model.score(&[Vec::new()])?;
        if scores[0].len() != model.meta.labels.len() {
            return Err(format!(
                "the model has {} outputs but {} labels",
                scores[0].len(),
                model.meta.labels.len()
            ));
        }
        Ok(model)
    }

    /// Scores a batch: one row of label scores per event, in label order.
    pub fn score(&self, batch: &[Features]) -> Result<Vec<Vec<f32>>, String> {
        // Padded to the batch's longest (at least 1): the model's K is
        // symbolic, and padding costs as much as features.
        let longest = batch.iter().map(Vec::len).max().unwrap_or(0);
        let (n, k) = (batch.len(), longest.clamp(1, self.meta.spec.max_features));
        let mut indices = vec![0i64; n * k];
        let mut values = vec![0f32; n * k];
        for (row, features) in batch.iter().enumerate() {
            for (col, &(bucket, value)) in features.iter().take(k).enumerate() {
                indices[row * k + col] = i64::from(bucket);
                values[row * k + col] = value;
            }
        }
        let indices = Tensor::from_shape(&[n, k], &indices).map_err(|e| e.to_string())?;
        let values = Tensor::from_shape(&[n, k], &values).map_err(|e| e.to_string())?;
        let outputs = self
            .plan
            .run(tvec!(indices.into(), values.into()))
            .map_err(|e| format!("inference failed: {e:#}"))?;
        let scores = outputs[0].to_plain_array_view::<f32>().map_err(|e| e.to_string())?;
        Ok(scores.outer_iter().map(|row| row.iter().copied().collect()).collect())
    }
}
