//! The trained model: an ONNX graph read and checked by tract, plus the
//! labels and feature settings stored in its metadata.
//!
//! # Two ways to score
//!
//! The graph `train/train.py` writes is a linear model over sparse
//! features: gather the weight rows of an event's feature buckets, sum them
//! weighted by the feature values, add the bias, then a softmax over the
//! categories and a sigmoid for each colour. tract runs it through its
//! general operators, which cost about 8 µs per event natively for some
//! 2,000 multiply-adds: shape bookkeeping, a gathered `[N, K, labels]`
//! tensor, and a batched matrix product.
//!
//! When the graph is exactly that one (its operators, in order, and the
//! shapes of its weights and bias), the tagger scores it with [`Linear`]:
//! the same arithmetic written out over the weight rows, with no
//! intermediate tensors. It is checked against tract when the model loads,
//! on probe batches; if a single score differs by more than 1e-4 the tagger
//! keeps tract. Any other graph, and `inference = "tract"` in the stage
//! config, runs through tract.

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

/// How the model's scores are computed; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inference {
    /// [`Linear`] when the graph is the linear model and agrees with tract
    /// on the probes; tract otherwise.
    Auto,
    /// Always tract.
    Tract,
}

/// A loaded model, ready to score batches.
pub struct Model {
    /// Labels and feature settings.
    pub meta: Meta,
    plan: std::sync::Arc<TypedRunnableModel>,
    linear: Option<Linear>,
}

impl Model {
    /// Reads an ONNX model written by `train/train.py`: checks its metadata
    /// and prepares tract's plan. The error says what is wrong with the file.
    pub fn from_bytes(bytes: &[u8], inference: Inference) -> Result<Model, String> {
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(|e| format!("not an ONNX model: {e}"))?;
        let meta = proto
            .metadata_props
            .iter()
            .find(|p| p.key == META_KEY)
            .ok_or_else(|| format!("the model has no \"{META_KEY}\" metadata: train it with plugins/ml-tagger/train/train.py"))?;
        let meta: Meta = weir_sdk::serde_json::from_str(&meta.value).map_err(|e| format!("the model's \"{META_KEY}\" metadata is malformed: {e}"))?;
        if meta.spec.version != 1 {
            return Err(format!("the model uses feature rules version {}, this plugin knows version 1", meta.spec.version));
        }
        if meta.spec.buckets == 0 || meta.spec.max_features == 0 || meta.spec.ngram == 0 {
            return Err("the model's feature settings have a zero bucket count, max_features or ngram".into());
        }
        let plan = onnx
            .model_for_proto_model(&proto)
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(|e| format!("tract cannot run the model: {e:#}"))?;
        let linear = match inference {
            Inference::Auto => proto.graph.as_ref().and_then(|graph| Linear::recognise(graph, &meta)),
            Inference::Tract => None,
        };
        let mut model = Model { meta, plan, linear: None };
        // One call now, so that a model whose outputs do not match its
        // labels is refused in `init`, not on the first event.
        let scores = model.score_with_tract(&[Vec::new()])?;
        if scores[0].len() != model.meta.labels.len() {
            return Err(format!("the model has {} outputs but {} labels", scores[0].len(), model.meta.labels.len()));
        }
        if let Some(linear) = linear {
            let probes = probes(&model.meta.spec);
            let expected = model.score_with_tract(&probes)?;
            if linear.agrees(&probes, &expected) {
                model.linear = Some(linear);
            }
        }
        Ok(model)
    }

    /// Whether scores come from [`Linear`] (`"linear"`) or tract
    /// (`"tract"`), for logs and benchmarks.
    pub fn inference(&self) -> &'static str {
        if self.linear.is_some() { "linear" } else { "tract" }
    }

    /// Scores a batch: one row of label scores per event, in label order.
    pub fn score(&self, batch: &[Features]) -> Result<Vec<Vec<f32>>, String> {
        match &self.linear {
            Some(linear) => Ok(batch.iter().map(|features| linear.score(features)).collect()),
            None => self.score_with_tract(batch),
        }
    }

    /// Scores a batch with tract.
    pub fn score_with_tract(&self, batch: &[Features]) -> Result<Vec<Vec<f32>>, String> {
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

/// The linear model of `train.py`, scored directly: see the module docs.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `buckets × labels`, row-major: the row of a feature bucket is its
    /// weight for every label.
    weights: Vec<f32>,
    /// One per label.
    bias: Vec<f32>,
    /// The first `categories` labels share a softmax; the rest each have a
    /// sigmoid.
    categories: usize,
}

/// The operators of the graph `train.py` writes, in order.
const LINEAR_GRAPH: [&str; 9] = ["Gather", "Unsqueeze", "MatMul", "Squeeze", "Add", "Split", "Softmax", "Sigmoid", "Concat"];

impl Linear {
    /// The weights and bias of `graph` if it is the linear model the
    /// metadata describes: the operators of [`LINEAR_GRAPH`], a
    /// `[buckets, labels]` weight matrix gathered by the indices, a
    /// `[labels]` bias, and labels ordered categories first.
    fn recognise(graph: &tract_onnx::pb::GraphProto, meta: &Meta) -> Option<Linear> {
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        if ops != LINEAR_GRAPH {
            return None;
        }
        let labels = meta.labels.len();
        let categories = meta.labels.iter().take_while(|l| l.kind == Kind::Category).count();
        if meta.labels[categories..].iter().any(|l| l.kind != Kind::Colour) {
            return None;
        }
        let initializer = |name: &str| graph.initializer.iter().find(|t| t.name == name);
        let weights = initializer(graph.node[0].input.first()?)?;
        let bias = graph.node[4].input.iter().find_map(|name| initializer(name))?;
        let buckets = i64::from(meta.spec.buckets);
        if weights.dims != [buckets, labels as i64] || bias.dims != [labels as i64] {
            return None;
        }
        Some(Linear { weights: floats(weights)?, bias: floats(bias)?, categories })
    }

    /// One event's scores, in label order.
    pub fn score(&self, features: &Features) -> Vec<f32> {
        let mut logits = self.bias.clone();
        accumulate(&mut logits, &self.weights, features);
        let (categories, colours) = logits.split_at_mut(self.categories);
        let max = categories.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for logit in categories.iter_mut() {
            *logit = (*logit - max).exp();
            sum += *logit;
        }
        for logit in categories.iter_mut() {
            *logit /= sum;
        }
        for logit in colours {
            *logit = 1.0 / (1.0 + (-*logit).exp());
        }
        logits
    }

    /// Whether every score of `probes` is within 1e-4 of tract's.
    fn agrees(&self, probes: &[Features], expected: &[Vec<f32>]) -> bool {
        probes.iter().zip(expected).all(|(features, tract)| {
            let ours = self.score(features);
            ours.len() == tract.len() && ours.iter().zip(tract).all(|(a, b)| (a - b).abs() <= 1e-4)
        })
    }
}

/// Adds each feature's weight row, times its value, to `logits`: the
/// model's arithmetic, one multiply-add per feature and label.
///
/// In wasm this is compiled with 128-bit SIMD (four labels per
/// instruction), which wasmtime runs natively; the rest of the plugin is
/// plain wasm.
#[cfg_attr(target_family = "wasm", target_feature(enable = "simd128"))]
fn accumulate(logits: &mut [f32], weights: &[f32], features: &Features) {
    let labels = logits.len();
    for &(bucket, value) in features {
        let row = &weights[bucket as usize * labels..][..labels];
        for (logit, weight) in logits.iter_mut().zip(row) {
            *logit += value * weight;
        }
    }
}

/// The floats of an ONNX tensor, stored either as raw little-endian bytes
/// or as a list.
fn floats(tensor: &tract_onnx::pb::TensorProto) -> Option<Vec<f32>> {
    const FLOAT: i32 = 1;
    if tensor.data_type != FLOAT {
        return None;
    }
    let expected: i64 = tensor.dims.iter().product();
    let values: Vec<f32> = if tensor.raw_data.is_empty() {
        tensor.float_data.clone()
    } else {
        tensor.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    (values.len() as i64 == expected).then_some(values)
}

/// Probe batches for checking [`Linear`] against tract: real features of a
/// few product texts, an empty row, rows touching the first and last
/// buckets, and rows of buckets spread over the whole table (whatever the
/// model's field names, so that the check never rests on empty rows).
fn probes(spec: &Spec) -> Vec<Features> {
    let texts = [
        "Slim fit stretch jeans, indigo wash",
        "Leather Chelsea boots | cognac",
        "Robe portefeuille midi bordeaux",
        "OVERSIZED HOODIE washed charcoal, heavy brushed fleece",
        "Sneaker aus Wildleder in Weiß und Grün",
    ];
    let mut probes: Vec<Features> = texts.iter().map(|t| crate::features::features(spec, &[("title", t)])).collect();
    probes.push(Vec::new());
    probes.push(vec![(0, 0.6), (spec.buckets - 1, 0.8)]);
    let mut seed = 0x9E37_79B9u32;
    for row in 0..8u32 {
        let mut spread: Features = (0..16 + row)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed % spec.buckets, 0.25)
            })
            .collect();
        spread.sort_unstable_by_key(|&(bucket, _)| bucket);
        spread.dedup_by_key(|&mut (bucket, _)| bucket);
        probes.push(spread);
    }
    probes
}
