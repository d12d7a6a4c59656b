//! `ml-tagger`: tags product events with their category and colours by
//! running a trained model inside the sandbox.
//!
//! ```toml
//! [[stages]]
//! name = "tag"
//! plugin = "../plugins/ml-tagger.wasm"
//! grants = { dirs = ["models"] }        # visible to the stage as /models
//! config = { model = "/models/tagger.onnx", min_score = 0.4, max_tags = 3 }
//! ```
//!
//! `model` is required: the path of an ONNX model, as the stage sees it (a
//! granted directory appears at `/<its last component>`). The model is
//! loaded once per instance, in `init`. The other keys and their defaults:
//!
//! ```toml
//! min_score = 0.5      # tags scoring less are left out (0..1)
//! max_tags = 3         # at most this many tags, the best first
//! output = "tags"      # where the tags are written (a dotted path)
//! fields = { title = "title", brand = "brand", description = "description" }
//! inference = "auto"  # or "tract": see below
//! ```
//!
//! `fields` says where the event keeps the texts the model reads. The title
//! is needed: an event without a non-empty string title is refused as
//! invalid (to the dead letter) with the reason. Brand and description may
//! be missing or null; when present they must be strings.
//!
//! The stage adds the tags to the JSON object payload:
//!
//! ```json
//! { "title": "Slim fit jeans, indigo wash",
//!   "tags": [ { "tag": "jeans", "kind": "category", "score": 0.981 },
//!             { "tag": "blue", "kind": "colour", "score": 0.874 } ] }
//! ```
//!
//! A category's score is its probability among the categories (they sum to
//! 1); a colour's score is the probability that the product has that colour
//! (several colours may score high). Scores are rounded to 3 decimals.
//!
//! The model is the one `train/train.py` writes: a linear model over hashed
//! word and character n-grams (see [`features`]), with its labels and
//! feature settings in its metadata. The whole batch is scored in one
//! inference call. tract reads and checks the model; for the graph
//! `train.py` writes, the scores are computed by [`model::Linear`], checked
//! against tract when the model loads (the whole stage costs about half as
//! much per event as with tract);
//! `inference = "tract"` always runs tract (see [`model`]).

pub mod features;
pub mod model;

use serde::Deserialize;
use weir_sdk::serde_json::{self, Value};
use weir_sdk::{Config, Error, Event, Output, Path, Selection, Stage, append_members};

pub use model::{Inference, Kind, Label, Model};

/// Where the event keeps the model's inputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fields {
    /// The product title: required.
    pub title: Path,
    /// The brand: optional.
    pub brand: Path,
    /// The description: optional.
    pub description: Path,
}

impl Default for Fields {
    fn default() -> Fields {
        let path = |name: &str| Path::parse(name).expect("a valid default path");
        Fields { title: path("title"), brand: path("brand"), description: path("description") }
    }
}

/// The stage's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The model file, as the stage sees it.
    pub model: String,
    /// The lowest score a tag needs.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// The most tags an event gets.
    #[serde(default = "default_max_tags")]
    pub max_tags: usize,
    /// Where the tags go.
    #[serde(default = "default_output")]
    pub output: Path,
    /// Where the texts are.
    #[serde(default)]
    pub fields: Fields,
    /// Who computes the scores.
    #[serde(default = "default_inference")]
    pub inference: Inference,
}

fn default_inference() -> Inference {
    Inference::Auto
}

fn default_min_score() -> f32 {
    0.5
}

fn default_max_tags() -> usize {
    3
}

fn default_output() -> Path {
    Path::parse("tags").expect("a valid default path")
}

impl Settings {
    /// Parses and checks the configuration.
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        if config.is_empty() {
            return Err("config.model: missing; name the ONNX model file, e.g. model = \"/models/tagger.onnx\", in a granted directory".into());
        }
        let settings: Settings = config.parse()?;
        if !(0.0..=1.0).contains(&settings.min_score) {
            return Err(format!("config.min_score: {} is not between 0 and 1", settings.min_score));
        }
        if settings.max_tags == 0 {
            return Err("config.max_tags: must be at least 1".into());
        }
        Ok(settings)
    }
}

/// One tag of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag<'m> {
    /// The label's name.
    pub name: &'m str,
    /// Category or colour.
    pub kind: Kind,
    /// Its score, 0..1.
    pub score: f32,
}

/// The tagger: settings and model, both read once.
pub struct Tagger {
    settings: Settings,
    model: Model,
    /// The fields read from each payload: the texts, and the output (to
    /// know whether it is there already).
    fields: Selection,
}

impl Tagger {
    /// Builds a tagger from settings and the model file's bytes.
    pub fn new(settings: Settings, model_bytes: &[u8]) -> Result<Tagger, String> {
        let model = Model::from_bytes(model_bytes, settings.inference).map_err(|e| format!("model {}: {e}", settings.model))?;
        let f = &settings.fields;
        let fields = Selection::new([&f.title, &f.brand, &f.description, &settings.output]);
        Ok(Tagger { settings, model, fields })
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The texts of an event the model reads, as `(field, text)`, or why
    /// the event cannot be tagged.
    fn texts<'v>(&self, event: &'v Value) -> Result<[(&'static str, &'v str); 3], Error> {
        let f = &self.settings.fields;
        let text = |path: &Path, required: bool| -> Result<&'v str, Error> {
            match path.get(event) {
                Some(Value::String(s)) if !(required && s.trim().is_empty()) => Ok(s),
                None | Some(Value::Null) if !required => Ok(""),
                None | Some(Value::Null) => Err(Error::invalid(format!("missing field \"{path}\": the tagger needs the product title, a non-empty string"))),
                Some(Value::String(_)) => Err(Error::invalid(format!("field \"{path}\" is empty: the tagger needs the product title"))),
                Some(other) => Err(Error::invalid(format!("field \"{path}\": expected a string, found {other}"))),
            }
        };
        Ok([("title", text(&f.title, true)?), ("brand", text(&f.brand, false)?), ("description", text(&f.description, false)?)])
    }

    /// Chooses an event's tags from its scores: those at or above
    /// `min_score`, the best first, at most `max_tags`.
    pub fn tags(&self, scores: &[f32]) -> Vec<Tag<'_>> {
        let mut tags: Vec<Tag<'_>> = self
            .model
            .meta
            .labels
            .iter()
            .zip(scores)
            .filter(|&(_, &score)| score >= self.settings.min_score)
            .map(|(label, &score)| Tag { name: &label.name, kind: label.kind, score })
            .collect();
        tags.sort_by(|a, b| b.score.total_cmp(&a.score));
        tags.truncate(self.settings.max_tags);
        tags
    }

    /// Tags a batch of JSON payloads: one result per payload, in order; the
    /// whole work of the stage, public so that a native benchmark runs
    /// exactly this code.
    ///
    /// Only the fields the tagger reads are parsed (see [`Selection`]).
    /// When the output is a top-level field the payload does not have yet,
    /// as usual, the tags are appended to the payload's text: its fields
    /// stay as they came, in their order. Otherwise the payload is parsed
    /// whole, the tags set, and the payload written again (keys sorted).
    pub fn tag_payloads(&self, payloads: &[&[u8]]) -> Vec<Result<Vec<u8>, Error>> {
        let mut read: Vec<Result<Value, Error>> = Vec::with_capacity(payloads.len());
        let mut batch = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let event = self.fields.parse(payload).and_then(|event| {
                if !event.is_object() {
                    return Err(Error::invalid("payload is not a JSON object"));
                }
                let texts = self.texts(&event)?;
                batch.push(features::features(&self.model.meta.spec, &texts));
                Ok(event)
            });
            read.push(event);
        }
        let mut scores = match self.model.score(&batch) {
            Ok(scores) => scores.into_iter(),
            // Inference itself failing is not the events' fault: ask for a
            // redelivery rather than dead-lettering good events.
            Err(e) => return read.iter().map(|_| Err(Error::retry(e.clone()))).collect(),
        };
        read.into_iter()
            .zip(payloads)
            .map(|(event, payload)| {
                let event = event?;
                let scores = scores.next().expect("one row of scores per tagged event");
                let tags = self.tags(&scores);
                self.write(payload, &event, &tags)
            })
            .collect()
    }

    /// The payload with its tags; `read` is what [`Selection`] read of it.
    fn write(&self, payload: &[u8], read: &Value, tags: &[Tag<'_>]) -> Result<Vec<u8>, Error> {
        let output = &self.settings.output;
        let key = output.as_str();
        if !key.contains('.') && read.get(key).is_none() {
            let mut out = Vec::with_capacity(payload.len() + 64 + 64 * tags.len());
            append_members(&mut out, payload, [(key, tags)])?;
            return Ok(out);
        }
        let mut event: Value = serde_json::from_slice(payload)?;
        let tags = serde_json::to_value(tags).map_err(Error::from)?;
        output.set(&mut event, tags).map_err(Error::invalid)?;
        serde_json::to_vec(&event).map_err(|e| Error::invalid(format!("cannot write the payload: {e}")))
    }
}

/// A tag as events carry it: `{"kind", "score", "tag"}`, the keys in the
/// order a JSON object map keeps them, the score rounded to 3 decimals.
impl serde::Serialize for Tag<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("kind", self.kind.as_str())?;
        map.serialize_entry("score", &round3(self.score))?;
        map.serialize_entry("tag", self.name)?;
        map.end()
    }
}

fn round3(x: f32) -> f64 {
    (f64::from(x) * 1000.0).round() / 1000.0
}

impl Stage for Tagger {
    fn init(config: Config) -> Result<Self, String> {
        let settings = Settings::from_config(&config)?;
        let bytes = std::fs::read(&settings.model).map_err(|e| {
            format!(
                "config.model: cannot read {}: {e}; the stage sees only the directories granted to it \
                 (grants = {{ dirs = [\"models\"] }} shows ./models as /models)",
                settings.model
            )
        })?;
        let tagger = Tagger::new(settings, &bytes)?;
        weir_sdk::debug!("model {}: {} labels, scored by {}", tagger.settings.model, tagger.model.meta.labels.len(), tagger.model.inference());
        Ok(tagger)
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        self.process_batch(vec![event]).pop().expect("one result per event")
    }

    fn process_batch(&mut self, events: Vec<Event>) -> Vec<Result<Output, Error>> {
        let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
        let results = self.tag_payloads(&payloads);
        events
            .into_iter()
            .zip(results)
            .map(|(event, payload)| Ok(event.with_payload(payload?).into()))
            .collect()
    }
}

weir_sdk::export_stage!(Tagger);
