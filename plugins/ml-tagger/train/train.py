#!/usr/bin/env python3
"""Trains the ml-tagger model and exports it to ONNX.

    pip install -r plugins/ml-tagger/train/requirements.txt
    python3 plugins/ml-tagger/train/train.py            # writes pipelines/models/tagger.onnx

The model tags a fashion product text with one category (softmax over the
categories) and its colours (one sigmoid per colour). It is a linear model
over hashed features; the features are computed by the plugin, in Rust, and
by `features()` below, in Python. The two must agree exactly: the rules are
written down once, in `plugins/ml-tagger/src/features.rs`, and this file
follows them. The ONNX graph takes the sparse features of a batch as two
[N, K] tensors (bucket indices and values, zero-padded to the batch's
longest; K is at most max_features) and computes

    scores = softmax|sigmoid(sum_k W[indices[n, k]] * values[n, k] + b)

with Gather and a batched MatMul, so a call costs K x labels multiply-adds
per event instead of buckets x labels.

The labels, the feature settings and the held-out figures are stored in the
model's metadata (`weir.tagger`), so that the plugin needs only the .onnx
file. Every fifth line of the data set (line index % 5 == 4) is held out;
the rest trains. Training is full-batch Adam with L2 regularisation, seeded,
and takes a few seconds.
"""

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]

CATEGORIES = [
    "dress", "t-shirt", "shirt", "sweater", "hoodie", "jacket", "coat", "jeans",
    "trousers", "skirt", "shorts", "sneakers", "boots", "sandals", "bag", "hat",
]
COLOURS = [
    "black", "white", "grey", "blue", "red", "green", "yellow", "pink",
    "purple", "brown", "beige", "orange",
]

# Feature settings; mirrored by `Spec` in features.rs and stored in the model.
SPEC = {
    "version": 1,
    "buckets": 4096,
    "max_features": 256,
    # field -> weight (multiples of 0.5 keep the sums exact in f32 and f64)
    "fields": {"title": 2.0, "brand": 1.0, "description": 1.0},
    "ngram": 3,
}


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def tokens(text: str):
    """Maximal runs of alphanumeric characters of the lower-cased text."""
    out, cur = [], []
    for c in text.lower():
        if c.isalnum():
            cur.append(c)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def features(item: dict, spec=SPEC):
    """Sparse features of one product: a sorted list of (bucket, value)."""
    buckets, n = spec["buckets"], spec["ngram"]
    acc = {}

    def add(feature: str, weight: float):
        i = fnv1a32(feature.encode("utf-8")) % buckets
        acc[i] = acc.get(i, 0.0) + weight

    for field, weight in spec["fields"].items():
        text = item.get(field) or ""
        for tok in tokens(text):
            add("w:" + tok, weight)
            padded = "<" + tok + ">"
            for s in range(0, len(padded) - n + 1):
                add("g:" + padded[s:s + n], weight / 2)
    # Keep the strongest max_features (ties: lower bucket), then L2-normalise.
    top = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[: spec["max_features"]]
    top.sort()
    norm = math.sqrt(sum(v * v for _, v in top)) or 1.0
    return [(i, v / norm) for i, v in top]


def load(path: pathlib.Path):
    items = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        if item["category"] not in CATEGORIES:
            sys.exit(f"{path}:{lineno}: unknown category {item['category']!r}")
        for c in item["colours"]:
            if c not in COLOURS:
                sys.exit(f"{path}:{lineno}: unknown colour {c!r}")
        items.append(item)
    return items


def design(items):
    x = np.zeros((len(items), SPEC["buckets"]), dtype=np.float64)
    for r, item in enumerate(items):
        for i, v in features(item):
            x[r, i] = v
    y = np.zeros((len(items), len(CATEGORIES) + len(COLOURS)))
    for r, item in enumerate(items):
        y[r, CATEGORIES.index(item["category"])] = 1
        for c in item["colours"]:
            y[r, len(CATEGORIES) + COLOURS.index(c)] = 1
    return x, y


def forward(x, w, b):
    z = x @ w + b
    nc = len(CATEGORIES)
    cat = z[:, :nc] - z[:, :nc].max(axis=1, keepdims=True)
    cat = np.exp(cat)
    cat /= cat.sum(axis=1, keepdims=True)
    col = 1 / (1 + np.exp(-z[:, nc:]))
    return np.concatenate([cat, col], axis=1)


def train(x, y, epochs, l2, lr, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.01, (x.shape[1], y.shape[1]))
    b = np.zeros(y.shape[1])
    mw, vw, mb, vb = (np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b))
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, epochs + 1):
        p = forward(x, w, b)
        # Softmax cross-entropy for the category, binary cross-entropy per
        # colour: both have the gradient p - y with respect to the logits.
        g = (p - y) / len(x)
        gw = x.T @ g + l2 * w
        gb = g.sum(axis=0)
        mw = b1 * mw + (1 - b1) * gw
        vw = b2 * vw + (1 - b2) * gw * gw
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb * gb
        w -= lr * (mw / (1 - b1**t)) / (np.sqrt(vw / (1 - b2**t)) + eps)
        b -= lr * (mb / (1 - b1**t)) / (np.sqrt(vb / (1 - b2**t)) + eps)
    return w, b


def evaluate(p, items, threshold):
    nc = len(CATEGORIES)
    cat_ok = sum(CATEGORIES[int(np.argmax(p[r, :nc]))] == it["category"] for r, it in enumerate(items))
    tp = fp = fn = 0
    exact = 0
    for r, it in enumerate(items):
        predicted = {COLOURS[j] for j in range(len(COLOURS)) if p[r, nc + j] >= threshold}
        truth = set(it["colours"])
        tp += len(predicted & truth)
        fp += len(predicted - truth)
        fn += len(truth - predicted)
        exact += predicted == truth
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    return {
        "examples": len(items),
        "category_accuracy": round(cat_ok / len(items), 4),
        "colour_precision": round(precision, 4),
        "colour_recall": round(recall, 4),
        "colour_f1": round(2 * precision * recall / max(precision + recall, 1e-9), 4),
        "colour_exact": round(exact / len(items), 4),
        "threshold": threshold,
    }


def export(w, b, meta, path: pathlib.Path):
    nc, nl = len(CATEGORIES), len(CATEGORIES) + len(COLOURS)
    init = [
        numpy_helper.from_array(w.astype(np.float32), "weights"),
        numpy_helper.from_array(b.astype(np.float32), "bias"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([nc, nl - nc], dtype=np.int64), "split"),
    ]
    nodes = [
        helper.make_node("Gather", ["weights", "indices"], ["rows"], axis=0),  # [N, K, L]
        helper.make_node("Unsqueeze", ["values", "axis1"], ["values3"]),  # [N, 1, K]
        helper.make_node("MatMul", ["values3", "rows"], ["weighted"]),  # [N, 1, L]
        helper.make_node("Squeeze", ["weighted", "axis1"], ["sums"]),  # [N, L]
        helper.make_node("Add", ["sums", "bias"], ["logits"]),
        helper.make_node("Split", ["logits", "split"], ["cat_logits", "col_logits"], axis=1),
        helper.make_node("Softmax", ["cat_logits"], ["cat"], axis=1),
        helper.make_node("Sigmoid", ["col_logits"], ["col"]),
        helper.make_node("Concat", ["cat", "col"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "weir-tagger",
        [
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["N", "K"]),
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["N", "K"]),
        ],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", nl])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="weir train.py")
    model.ir_version = 8
    helper.set_model_props(model, {"weir.tagger": json.dumps(meta, sort_keys=True)})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=pathlib.Path, default=HERE / "products.jsonl")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "pipelines" / "models" / "tagger.onnx")
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--l2", type=float, default=1e-5)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threshold", type=float, default=0.4, help="colour score counted as a tag (the example pipeline's min_score)")
    args = ap.parse_args()

    started = time.time()
    items = load(args.data)
    train_items = [it for i, it in enumerate(items) if i % 5 != 4]
    held_out = [it for i, it in enumerate(items) if i % 5 == 4]
    print(f"{len(items)} products: {len(train_items)} to train, {len(held_out)} held out", file=sys.stderr)

    x, y = design(train_items)
    w, b = train(x, y, args.epochs, args.l2, args.lr, args.seed)
    xt, _ = design(held_out)
    report = {
        "train": evaluate(forward(x, w, b), train_items, args.threshold),
        "held_out": evaluate(forward(xt, w, b), held_out, args.threshold),
    }
    meta = {
        "spec": SPEC,
        "labels": [{"name": c, "kind": "category"} for c in CATEGORIES]
        + [{"name": c, "kind": "colour"} for c in COLOURS],
        "evaluation": report,
        "data": {"file": args.data.name, "products": len(items), "held_out": "line index % 5 == 4"},
    }
    export(w, b, meta, args.out)
    print(json.dumps(report, indent=2))
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB) in {time.time() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
