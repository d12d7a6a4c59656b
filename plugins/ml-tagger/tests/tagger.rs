//! The tagger natively, through the SDK's test helpers, with the committed
//! model: held-out accuracy as the training script measured it, tags on
//! products it never saw, and refusals that name their reason.

use std::path::PathBuf;

use weir_ml_tagger::{Kind, Settings, Tagger};
use weir_sdk::serde_json::{self, Value, json};
use weir_sdk::testing;
use weir_sdk::{Config, Event};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> String {
    root().join("pipelines/models/tagger.onnx").to_str().expect("UTF-8 path").to_owned()
}

fn tagger(extra: Value) -> Tagger {
    let mut config = json!({ "model": model_path() });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    testing::init::<Tagger>(&config.to_string()).unwrap_or_else(|e| panic!("init: {e}"))
}

fn tag(tagger: &mut Tagger, payload: Value) -> Result<Value, String> {
    let mut out = testing::process(tagger, vec![Event::new_json("tracking.product.view", &payload).unwrap()]).unwrap();
    match out.remove(0) {
        Ok(events) => Ok(serde_json::from_slice(&events[0].payload).unwrap()),
        Err(e) => Err(e.to_string()),
    }
}

/// `(name, kind)` of the tags of a tagged payload, best first.
fn tags(payload: &Value) -> Vec<(String, String)> {
    payload["tags"]
        .as_array()
        .expect("tags is a list")
        .iter()
        .map(|t| (t["tag"].as_str().unwrap().to_owned(), t["kind"].as_str().unwrap().to_owned()))
        .collect()
}

fn held_out() -> Vec<Value> {
    let data = std::fs::read_to_string(root().join("plugins/ml-tagger/train/products.jsonl")).expect("the data set");
    data.lines()
        .enumerate()
        .filter(|(i, _)| i % 5 == 4)
        .map(|(_, line)| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn held_out_accuracy_is_what_training_measured() {
    let t = tagger(json!({ "min_score": 0.0, "max_tags": 100 }));
    let items = held_out();
    let payloads: Vec<Vec<u8>> = items.iter().map(|item| serde_json::to_vec(item).unwrap()).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let mut correct = 0;
    for (item, result) in items.iter().zip(t.tag_payloads(&refs)) {
        let tagged: Value = serde_json::from_slice(&result.expect("every held-out product is tagged")).unwrap();
        let best_category = tags(&tagged).into_iter().find(|(_, kind)| kind == "category").expect("a category").0;
        correct += usize::from(best_category == item["category"].as_str().unwrap());
    }
    let accuracy = correct as f64 / items.len() as f64;
    let trained = t.model().meta.evaluation["held_out"]["category_accuracy"].as_f64().expect("the model's evaluation");
    // The same figure in Rust as in Python: the features agree.
    assert!((accuracy - trained).abs() < 0.005, "Rust {accuracy:.4}, train.py {trained:.4}");
    assert!(accuracy >= 0.85, "held-out category accuracy {accuracy:.3}");
}

#[test]
fn products_it_never_saw_get_their_category_and_colours() {
    let mut t = tagger(json!({ "min_score": 0.4, "max_tags": 3 }));
    for (title, description, category, colour) in [
        ("Slim fit stretch jeans - indigo wash", "", "jeans", "blue"),
        ("Leather Chelsea boots | cognac", "Goodyear welted, elastic side panels.", "boots", "brown"),
        ("Women's wrap midi dress in burgundy", "Flowing viscose, tie waist.", "dress", "red"),
        ("OVERSIZED HOODIE washed charcoal", "Heavy brushed fleece.", "hoodie", "grey"),
    ] {
        let out = tag(&mut t, json!({ "title": title, "description": description, "price": 10 })).unwrap();
        let got = tags(&out);
        assert!(got.contains(&(category.to_owned(), "category".to_owned())), "{title}: {got:?}");
        assert!(got.contains(&(colour.to_owned(), "colour".to_owned())), "{title}: {got:?}");
        assert_eq!(out["price"], 10, "the rest of the event is kept");
        let scores: Vec<f64> = out["tags"].as_array().unwrap().iter().map(|t| t["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
        assert!(scores.iter().all(|s| (0.4..=1.0).contains(s)), "{scores:?}");
    }
}

#[test]
fn min_score_and_max_tags_bound_the_tags() {
    let product = json!({ "title": "Black and white striped cotton tee", "brand": "Northwind" });
    let all = tag(&mut tagger(json!({ "min_score": 0.0, "max_tags": 100 })), product.clone()).unwrap();
    assert_eq!(tags(&all).len(), 28, "every label, with min_score 0");
    let one = tag(&mut tagger(json!({ "max_tags": 1 })), product.clone()).unwrap();
    assert_eq!(tags(&one).len(), 1);
    let none = tag(&mut tagger(json!({ "min_score": 1.0 })), product).unwrap();
    assert_eq!(none["tags"], json!([]));
}

#[test]
fn the_output_path_and_field_names_are_configurable() {
    let mut t = tagger(json!({ "output": "ml.tags", "fields": { "title": "product.name" } }));
    let out = tag(&mut t, json!({ "product": { "name": "Red leather crossbody bag" } })).unwrap();
    assert!(tags(&json!({ "tags": out["ml"]["tags"] })).contains(&("bag".into(), "category".into())), "{out}");
}

#[test]
fn events_without_a_title_are_refused_with_the_reason() {
    let mut t = tagger(json!({}));
    let missing = tag(&mut t, json!({ "description": "no title" })).unwrap_err();
    assert!(missing.contains("missing field \"title\""), "{missing}");
    let empty = tag(&mut t, json!({ "title": "  " })).unwrap_err();
    assert!(empty.contains("field \"title\" is empty"), "{empty}");
    let number = tag(&mut t, json!({ "title": 7 })).unwrap_err();
    assert!(number.contains("field \"title\": expected a string, found 7"), "{number}");
    let brand = tag(&mut t, json!({ "title": "Jeans", "brand": ["x"] })).unwrap_err();
    assert!(brand.contains("field \"brand\": expected a string"), "{brand}");
    let out = testing::process(&mut t, vec![Event::new("x", "not json")]).unwrap();
    assert!(out[0].as_ref().unwrap_err().is_invalid());
    let array = tag(&mut t, json!([1])).unwrap_err();
    assert!(array.contains("not a JSON object"), "{array}");
}

#[test]
fn one_bad_event_does_not_spoil_its_batch() {
    let mut t = tagger(json!({}));
    let events = vec![
        Event::new_json("a", &json!({ "title": "Navy wool overcoat" })).unwrap(),
        Event::new_json("a", &json!({ "brand": "no title" })).unwrap(),
        Event::new_json("a", &json!({ "title": "Yellow canvas sneakers" })).unwrap(),
    ];
    let out = testing::process(&mut t, events).unwrap();
    assert!(out[0].is_ok() && out[1].is_err() && out[2].is_ok(), "{out:?}");
    let third: Value = serde_json::from_slice(&out[2].as_ref().unwrap()[0].payload).unwrap();
    assert!(tags(&third).contains(&("sneakers".into(), "category".into())), "{third}");
}

#[test]
fn bad_configs_are_refused_naming_the_key() {
    let err = |config: &str| testing::init::<Tagger>(config).err().expect("refused");
    assert!(err("{}").contains("config.model: missing"));
    assert!(err(&json!({ "model": model_path(), "min_score": 2 }).to_string()).contains("config.min_score"));
    assert!(err(&json!({ "model": model_path(), "max_tags": 0 }).to_string()).contains("config.max_tags"));
    assert!(err(&json!({ "model": model_path(), "colour": 1 }).to_string()).contains("colour"));
    let unreadable = err(r#"{"model": "/models/none.onnx"}"#);
    assert!(unreadable.contains("cannot read /models/none.onnx") && unreadable.contains("grants"), "{unreadable}");
    let settings = Settings::from_config(&Config::from_json(&json!({ "model": "x" }).to_string()).unwrap()).unwrap();
    let not_onnx = Tagger::new(settings, b"not a model").err().expect("refused");
    assert!(not_onnx.contains("not an ONNX model"), "{not_onnx}");
}

#[test]
fn the_labels_are_the_categories_then_the_colours() {
    let t = tagger(json!({}));
    let labels = &t.model().meta.labels;
    assert_eq!(labels.iter().filter(|l| l.kind == Kind::Category).count(), 16);
    assert_eq!(labels.iter().filter(|l| l.kind == Kind::Colour).count(), 12);
}

/// Features of the held-out products, as the tagger computes them.
fn held_out_features(t: &Tagger) -> Vec<weir_ml_tagger::features::Features> {
    held_out()
        .iter()
        .map(|item| {
            let text = |key: &str| item[key].as_str().unwrap_or("").to_owned();
            let texts = [("title", text("title")), ("brand", text("brand")), ("description", text("description"))];
            let texts: Vec<(&str, &str)> = texts.iter().map(|(k, v)| (*k, v.as_str())).collect();
            weir_ml_tagger::features::features(&t.model().meta.spec, &texts)
        })
        .collect()
}

#[test]
fn the_linear_scorer_gives_tracts_scores() {
    let auto = tagger(json!({}));
    let tract = tagger(json!({ "inference": "tract" }));
    assert_eq!(auto.model().inference(), "linear", "the shipped model is the linear graph");
    assert_eq!(tract.model().inference(), "tract");
    let batch = held_out_features(&auto);
    let ours = auto.model().score(&batch).unwrap();
    let theirs = tract.model().score(&batch).unwrap();
    assert_eq!(ours.len(), 251);
    for (row, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a.len(), 28);
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "held-out product {row}: scores differ by {worst}");
    }
    // And what the events get is the same.
    let payloads: Vec<Vec<u8>> = held_out().iter().map(|item| serde_json::to_vec(item).unwrap()).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let tagged = |t: &Tagger| -> Vec<Vec<(String, String)>> {
        t.tag_payloads(&refs)
            .into_iter()
            .map(|r| tags(&serde_json::from_slice(&r.unwrap()).unwrap()))
            .collect()
    };
    assert_eq!(tagged(&auto), tagged(&tract));
}

/// The committed model, altered by `change`, re-encoded.
fn altered_model(change: impl FnOnce(&mut tract_onnx::pb::ModelProto)) -> Vec<u8> {
    use prost::Message;
    use tract_onnx::prelude::Framework;
    let bytes = std::fs::read(model_path()).unwrap();
    let mut proto = tract_onnx::onnx().proto_model_for_read(&mut &bytes[..]).unwrap();
    change(&mut proto);
    proto.encode_to_vec()
}

fn settings() -> Settings {
    Settings::from_config(&Config::from_json(&json!({ "model": "altered.onnx" }).to_string()).unwrap()).unwrap()
}

#[test]
fn another_graph_is_run_by_tract() {
    // A ReLU where the colours' sigmoid was: not the linear model.
    let bytes = altered_model(|m| {
        let node = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "Sigmoid").unwrap();
        node.op_type = "Relu".into();
    });
    let t = Tagger::new(settings(), &bytes).unwrap();
    assert_eq!(t.model().inference(), "tract");
    let scores = t.model().score(&held_out_features(&t)[..4]).unwrap();
    // Colours are now raw ReLU outputs: not all within 0..1 as sigmoids are.
    assert!(scores.iter().flat_map(|row| &row[16..]).any(|&s| s == 0.0), "ReLU zeroes negative logits");
}

#[test]
fn a_graph_that_looks_linear_but_computes_otherwise_is_run_by_tract() {
    // Same operators, but the softmax runs across the batch (axis 0), not
    // across the categories: the probes catch it.
    let bytes = altered_model(|m| {
        let node = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "Softmax").unwrap();
        node.attribute.iter_mut().find(|a| a.name == "axis").unwrap().i = 0;
    });
    let t = Tagger::new(settings(), &bytes).unwrap();
    assert_eq!(t.model().inference(), "tract");
}

/// The raw payload a tagger writes for `payload`.
fn tagged_text(t: &mut Tagger, payload: &str) -> String {
    let mut out = testing::process(t, vec![Event::new("tracking.product.view", payload)]).unwrap();
    String::from_utf8(out.remove(0).unwrap().remove(0).payload).unwrap()
}

#[test]
fn tags_are_appended_and_the_event_keeps_its_text() {
    let mut t = tagger(json!({ "max_tags": 1 }));
    let payload = r#"{ "title": "Slim fit jeans, indigo wash", "zeta": {"a": [1, 2.50]}, "id": 7 }"#;
    let text = tagged_text(&mut t, payload);
    // The fields as they came, in their order, then the tags.
    assert!(
        text.starts_with(r#"{ "title": "Slim fit jeans, indigo wash", "zeta": {"a": [1, 2.50]}, "id": 7,"tags":[{"kind":"category","score":"#),
        "{text}"
    );
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tags(&read), vec![("jeans".to_owned(), "category".to_owned())]);
    // An empty object gets no stray comma.
    let mut all = tagger(json!({ "fields": { "title": "t" } }));
    let from_empty = tagged_text(&mut all, "{\"t\":\"red dress\"}\n");
    assert!(from_empty.starts_with(r#"{"t":"red dress","tags":["#), "{from_empty}");
    serde_json::from_str::<Value>(&from_empty).unwrap();
}

#[test]
fn existing_tags_are_replaced_not_duplicated() {
    let mut t = tagger(json!({ "max_tags": 1 }));
    let text = tagged_text(&mut t, r#"{"title": "Yellow canvas sneakers", "tags": ["old"], "b": 1}"#);
    assert_eq!(text.matches("\"tags\"").count(), 1, "{text}");
    let read: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tags(&read), vec![("sneakers".to_owned(), "category".to_owned())]);
    assert_eq!(read["b"], 1);
}
