//! The deployment files in `deploy/`: the Grafana dashboard queries only metrics weir
//! exports, the systemd unit is well-formed (and verified by `systemd-analyze` when
//! it is installed), and the example `weir.toml` parses with weir's own parser.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use weir_tests::harness::TempDir;

/// Every metric weir exports (Prometheus names; histograms without their suffixes).
const METRICS: &[&str] = &[
    "weir_events_in_total",
    "weir_events_out_total",
    "weir_events_dropped_total",
    "weir_events_dead_lettered_total",
    "weir_stage_call_duration_seconds",
    "weir_stage_instance_restarts_total",
    "weir_source_pending_messages",
    "weir_source_redeliveries_total",
    "weir_reloads_total",
    "weir_nats_connected",
    "weir_nats_reconnects_total",
    "weir_publish_errors_total",
    "weir_candidate_events_total",
    "weir_candidate_errors_total",
    "weir_candidate_agreements_total",
    "weir_candidate_differences_total",
    "weir_candidate_decisions_total",
];

fn deploy_file(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("deploy").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// Every string under an `expr` key, anywhere in the JSON (rows may nest panels).
fn exprs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr),
                    _ => exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The `weir_[a-z_]+` names in an expression, `_bucket`/`_sum`/`_count` stripped.
fn metric_names(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while let Some(found) = expr[i..].find("weir_") {
        let start = i + found;
        // Only a whole identifier: not the tail of `xweir_...`.
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "weir_".len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
            names.push(base.to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn dashboard_uses_only_exported_metrics() {
    let (path, text) = deploy_file("grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let panels = dashboard["panels"].as_array().expect("the dashboard has a panels array");
    assert!(panels.iter().any(|p| p["type"] != "row"), "the dashboard has no panels");
    assert_eq!(dashboard["schemaVersion"], 39);
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"), "no DS_PROMETHEUS input");
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let pipeline = variables.iter().find(|v| v["name"] == "pipeline").expect("a `pipeline` template variable");
    assert!(
        pipeline.to_string().contains("label_values(weir_events_in_total, pipeline)"),
        "the pipeline variable comes from label_values(weir_events_in_total, pipeline): {pipeline}"
    );

    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(!all.is_empty(), "no expr in the dashboard");
    let mut used = BTreeSet::new();
    for expr in &all {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "expression without a weir metric: {expr}");
        for name in names {
            assert!(METRICS.contains(&name.as_str()), "unknown metric {name} in: {expr}");
            used.insert(name);
        }
    }
    let unused: Vec<_> = METRICS.iter().filter(|m| !used.contains(**m)).collect();
    assert!(unused.is_empty(), "metrics without a panel: {unused:?}");
}

#[test]
fn metric_names_are_extracted() {
    assert_eq!(
        metric_names("histogram_quantile(0.99, sum by (le) (rate(weir_stage_call_duration_seconds_bucket{x=\"weir\"}[5m])))"),
        ["weir_stage_call_duration_seconds"]
    );
    assert_eq!(metric_names("weir_a_total / weir_b_count"), ["weir_a_total", "weir_b"]);
}

/// `key=value` lines of a unit file section, comments skipped.
fn directives<'a>(unit: &'a str, section: &str) -> Vec<(&'a str, &'a str)> {
    let mut current = "";
    let mut found = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line;
        } else if current == section
            && !line.starts_with('#')
            && !line.starts_with(';')
            && let Some((key, value)) = line.split_once('=')
        {
            found.push((key.trim(), value.trim()));
        }
    }
    found
}

#[test]
fn systemd_unit() {
    let (_, unit) = deploy_file("weir.service");
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(unit.lines().any(|l| l.trim() == section), "no {section} section");
    }
    let service = directives(&unit, "[Service]");
    let get = |key: &str| service.iter().filter(|(k, _)| *k == key).map(|(_, v)| *v).collect::<Vec<_>>();
    let exec_start = get("ExecStart");
    assert_eq!(exec_start.len(), 1, "one ExecStart: {exec_start:?}");
    let mut words = exec_start[0].split_whitespace();
    let binary = words.next().expect("ExecStart has a command");
    assert!(binary.ends_with("/weir"), "ExecStart runs weir: {}", exec_start[0]);
    assert!(words.any(|w| w == "run"), "ExecStart runs `weir run`: {}", exec_start[0]);
    assert_eq!(get("User"), ["weir"]);
    assert_eq!(get("Type"), ["exec"]);
    assert_eq!(get("KillSignal"), ["SIGTERM"]);
    assert_eq!(get("Restart"), ["on-failure"]);
    // weir's default shutdown_timeout is 10s: systemd must wait longer before SIGKILL.
    let stop: Vec<u64> = get("TimeoutStopSec").iter().map(|v| v.trim_end_matches('s').parse().expect("seconds")).collect();
    assert!(stop.len() == 1 && stop[0] > 10, "TimeoutStopSec above 10s: {stop:?}");

    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not on PATH: skipping `systemd-analyze verify`");
        return;
    }
    let dir = TempDir::new("deploy");
    let copy = dir.path().join("weir.service");
    // The binary is not installed here: verify checks that ExecStart's file exists.
    let runnable = unit.replace(binary, "/bin/true");
    let verify = |text: &str| {
        std::fs::write(&copy, text).expect("write the unit copy");
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&copy)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .expect("systemd-analyze runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success() && !stderr.contains(copy.to_str().unwrap_or("weir.service")), stderr)
    };
    let (mut ok, mut stderr) = verify(&runnable);
    if !ok && stderr.to_lowercase().contains("user") {
        // The `weir` user does not exist on this machine.
        let without_user: String = runnable
            .lines()
            .filter(|l| !l.starts_with("User=") && !l.starts_with("Group="))
            .map(|l| format!("{l}\n"))
            .collect();
        (ok, stderr) = verify(&without_user);
    }
    assert!(ok, "systemd-analyze verify failed:\n{stderr}");
}

#[test]
fn example_config_parses() {
    let (path, text) = deploy_file("weir.toml");
    let global = weir::config::parse_global(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(global.metrics.address.to_string(), "0.0.0.0:9464");
    assert!(global.metrics.enabled);
    assert!(global.pipelines.ends_with("/etc/weir/pipelines"), "pipelines: {}", global.pipelines.display());
    assert_eq!(global.cache_dir, Path::new("/var/cache/weir"));
    assert_eq!(global.shutdown_timeout, std::time::Duration::from_secs(10));
}
