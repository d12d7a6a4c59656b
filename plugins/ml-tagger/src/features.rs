//! The model's input: hashed word and character n-gram features of a
//! product's text.
//!
//! These rules are the contract between the plugin and the training script
//! (`train/train.py`, function `features`), which follows them line by
//! line; the settings travel inside the model (`weir.tagger` metadata), so
//! a model trained with other settings is read correctly.
//!
//! For each field (title, brand, description) with its weight:
//!
//! 1. lower-case the text and split it into tokens, the maximal runs of
//!    alphanumeric characters;
//! 2. for each token `t`, add the weight to the bucket of `w:t`, and half
//!    the weight to the bucket of each character n-gram `g:…` of `<t>`
//!    (the token between angle brackets, so that prefixes and suffixes are
//!    features of their own);
//! 3. a feature's bucket is the 32-bit FNV-1a hash of its UTF-8 bytes,
//!    modulo the number of buckets.
//!
//! Then keep the `max_features` strongest buckets (ties: the lower bucket),
//! sorted by bucket, and divide by their Euclidean norm. Weights are
//! multiples of 0.5, so the sums are exact in any float type and the
//! selection cannot differ between Python and Rust.

use serde::Deserialize;

/// Feature settings, as stored in the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Spec {
    /// Version of these rules; this plugin implements version 1.
    pub version: u32,
    /// Number of hash buckets: the rows of the model's weight matrix.
    pub buckets: u32,
    /// Features kept per event: the model's K.
    pub max_features: usize,
    /// Field name to weight.
    pub fields: std::collections::BTreeMap<String, f32>,
    /// Character n-gram length.
    pub ngram: usize,
}

/// The features of one event: `(bucket, value)`, sorted by bucket.
pub type Features = Vec<(u32, f32)>;

/// 32-bit FNV-1a.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    Fnv::new().bytes(bytes).finish()
}

/// Computes the features of a product from its fields' texts, given as
/// `(field name, text)`; fields the spec does not weigh are ignored.
///
/// ```
/// use weir_ml_tagger::features::{Spec, features};
/// let spec = Spec { version: 1, buckets: 64, max_features: 8, ngram: 3,
///                   fields: [("title".to_string(), 2.0)].into() };
/// let f = features(&spec, &[("title", "Red dress")]);
/// assert!(f.len() <= 8 && f.windows(2).all(|w| w[0].0 < w[1].0));
/// let norm: f32 = f.iter().map(|(_, v)| v * v).sum();
/// assert!((norm - 1.0).abs() < 1e-5);
/// ```
pub fn features(spec: &Spec, fields: &[(&str, &str)]) -> Features {
    // Every (bucket, weight) added, then merged: a sort of a few hundred
    // pairs is cheaper than a hash map, and needs no random seed.
    let mut added: Vec<(u32, f32)> = Vec::with_capacity(512);
    let n = spec.ngram.max(1);
    let mut padded: Vec<u8> = Vec::with_capacity(64);
    let mut bounds: Vec<usize> = Vec::with_capacity(64);
    for (name, text) in fields {
        let Some(&weight) = spec.fields.get(*name) else { continue };
        let lower = text.to_lowercase();
        for token in lower.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
            added.push((Fnv::new().bytes(b"w:").bytes(token.as_bytes()).finish() % spec.buckets, weight));

            // `<token>` as bytes, with the offset of every character, so that
            // each n-gram of characters is a slice: hashed, never built.
            padded.clear();
            padded.push(b'<');
            padded.extend_from_slice(token.as_bytes());
            padded.push(b'>');
            bounds.clear();
            bounds.push(0);
            bounds.extend(token.char_indices().map(|(i, _)| i + 1));
            bounds.push(padded.len() - 1);
            bounds.push(padded.len());
            for window in bounds.windows(n + 1) {
                let gram = &padded[window[0]..window[n]];
                added.push((Fnv::new().bytes(b"g:").bytes(gram).finish() % spec.buckets, weight / 2.0));
            }
        }
    }
    added.sort_unstable_by_key(|&(bucket, _)| bucket);
    let mut merged: Features = Vec::with_capacity(added.len());
    for (bucket, weight) in added {
        match merged.last_mut() {
            Some((last, sum)) if *last == bucket => *sum += weight,
            _ => merged.push((bucket, weight)),
        }
    }
    // Keep the strongest (ties: the lower bucket), back in bucket order.
    if merged.len() > spec.max_features {
        merged.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        merged.truncate(spec.max_features);
        merged.sort_unstable_by_key(|&(bucket, _)| bucket);
    }
    let norm = merged.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, v) in &mut merged {
            *v /= norm;
        }
    }
    merged
}

/// 32-bit FNV-1a over several byte slices, as if they were one.
struct Fnv(u32);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0x811c_9dc5)
    }

    fn bytes(self, bytes: &[u8]) -> Fnv {
        Fnv(bytes.iter().fold(self.0, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)))
    }

    fn finish(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec { version: 1, buckets: 1 << 20, max_features: 1000, ngram: 3, fields: [("title".to_string(), 2.0), ("description".to_string(), 1.0)].into() }
    }

    #[test]
    fn fnv1a32_matches_the_reference_values() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn a_token_gives_its_word_and_padded_ngrams() {
        // "ab": w:ab, g:<ab, g:ab> -> three features, weights 2, 1, 1.
        let f = features(&spec(), &[("title", "AB")]);
        let mut values: Vec<f32> = f.iter().map(|(_, v)| *v).collect();
        values.sort_by(f32::total_cmp);
        let n = (4.0f32 + 1.0 + 1.0).sqrt();
        assert_eq!(values, vec![1.0 / n, 1.0 / n, 2.0 / n]);
        let bucket = |s: &str| fnv1a32(s.as_bytes()) % (1 << 20);
        assert!(f.iter().any(|&(b, v)| b == bucket("w:ab") && v == 2.0 / n));
    }

    #[test]
    fn punctuation_splits_and_case_folds_and_unknown_fields_are_ignored() {
        assert_eq!(
            features(&spec(), &[("title", "Navy/white T-Shirt")]),
            features(&spec(), &[("title", "navy white t shirt"), ("colour", "ignored")])
        );
        assert!(features(&spec(), &[("title", " -- ")]).is_empty());
    }

    #[test]
    fn only_the_strongest_features_are_kept() {
        let mut small = spec();
        small.max_features = 2;
        let f = features(&small, &[("title", "x"), ("description", "y")]);
        // w:x weighs 2, everything else 1 or less.
        assert_eq!(f.len(), 2);
        assert!(f.iter().any(|&(b, _)| b == fnv1a32(b"w:x") % (1 << 20)));
    }
}
