//! `[stages.candidate]`: a new version of a stage run beside the live one,
//! in shadow (compared, never published) or as a canary (published for a
//! share of the events), with the rules that promote or roll it back.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use toml::Spanned;

use super::error::{ConfigError, SourceFile};
use super::json::JsonObject;
use super::subject::PublishSubject;
use super::table::Table;
use super::units::PositiveCount;
use super::{Grants, Limits, Subject};

/// A candidate version of one stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The candidate's component file.
    pub plugin: PathBuf,
    /// Its `config` (the stage's own when not given).
    pub config: serde_json::Value,
    /// Its limits (the stage's own when not given).
    pub limits: Limits,
    /// Its grants (the stage's own when not given).
    pub grants: Grants,
    /// Shadow or canary.
    pub mode: Mode,
    /// The share of events the candidate sees, in (0, 1].
    pub share: f64,
    /// Canary: what keeps one key on one version.
    pub key: CanaryKey,
    /// Who decides: the rules, or a person.
    pub decide: Decide,
    /// The rules.
    pub rules: Rules,
    /// Shadow: where samples of differing events are published.
    pub diff_subject: Option<Subject>,
}

/// How a candidate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Processes a copy of the events; its outputs are compared, never published.
    Shadow,
    /// Its outputs are published for a share of the events, chosen by key.
    Canary,
}

impl Mode {
    /// `shadow` or `canary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Canary => "canary",
        }
    }
}

/// Who promotes or rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decide {
    /// The rules, as soon as they can.
    Auto,
    /// A person, with `weir promote` or `weir rollback`; the rules only report.
    Manual,
}

/// Canary stickiness: the events of one key go to one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryKey {
    /// The event's subject as it reaches the stage.
    Subject,
    /// A dotted path into the JSON payload (`user.id`); an event without it
    /// goes to the live version.
    Field(String),
}

impl CanaryKey {
    /// As written in the file: `subject` or the path.
    pub fn as_str(&self) -> &str {
        match self {
            CanaryKey::Subject => "subject",
            CanaryKey::Field(path) => path,
        }
    }
}

/// The limits a candidate must stay within, against the live version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Events the candidate must have processed before it is promoted.
    pub min_events: u64,
    /// Shadow: the most differences per compared event.
    pub max_diff_rate: f64,
    /// The most failures per event above the live version's own rate.
    pub max_error_rate: f64,
    /// The most time per event, as a multiple of the live version's.
    pub max_slowdown: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { min_events: 1000, max_diff_rate: 0.01, max_error_rate: 0.01, max_slowdown: 2.0 }
    }
}

impl Rules {
    /// Events after which a broken limit rolls back: few enough to act
    /// quickly, enough that one unlucky event is not a rate.
    pub fn judge_after(&self) -> u64 {
        self.min_events.min(100)
    }
}

// ---- the TOML shape ----------------------------------------------------------------

/// The table as written; `L` and `G` are the stage's own `limits` and
/// `grants` tables (`pipeline.rs`), which the candidate shares.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCandidate<L, G> {
    pub(crate) plugin: Spanned<String>,
    pub(crate) mode: Mode,
    share: Option<Spanned<Fraction>>,
    key: Option<Spanned<String>>,
    pub(crate) limits: Option<Table<L>>,
    pub(crate) grants: Option<Table<G>>,
    pub(crate) config: Option<JsonObject>,
    decide: Option<Decide>,
    min_events: Option<PositiveCount>,
    max_diff_rate: Option<Spanned<Fraction>>,
    max_error_rate: Option<Fraction>,
    max_slowdown: Option<Slowdown>,
    diff_subject: Option<Spanned<PublishSubject>>,
}

impl<L, G> RawCandidate<L, G> {
    /// Checks the keys that depend on the mode and builds the candidate;
    /// `plugin`, `limits`, `grants` and `config` are resolved by the caller.
    pub(crate) fn finish(
        self,
        stage: usize,
        source: &SourceFile<'_>,
        plugin: PathBuf,
        config: serde_json::Value,
        limits: Limits,
        grants: Grants,
    ) -> Result<Candidate, ConfigError> {
        let prefix = format!("stages[{stage}].candidate");
        let shadow_only = |key: &str, span: std::ops::Range<usize>| {
            source.error_at(
                span,
                format!("{prefix}.{key}"),
                format!("\"{key}\" only applies to mode = \"shadow\": a canary's events go through one version, so nothing is compared"),
                Some("remove it, or set mode = \"shadow\"".to_owned()),
            )
        };
        if self.mode == Mode::Canary {
            if let Some(rate) = &self.max_diff_rate {
                return Err(shadow_only("max_diff_rate", rate.span()));
            }
            if let Some(subject) = &self.diff_subject {
                return Err(shadow_only("diff_subject", subject.span()));
            }
        }
        let key = match self.key {
            None => CanaryKey::Subject,
            Some(key) if self.mode == Mode::Shadow => {
                return Err(source.error_at(
                    key.span(),
                    format!("{prefix}.key"),
                    "\"key\" only applies to mode = \"canary\": a shadow sees its share of every subject",
                    Some("remove it, or set mode = \"canary\"".to_owned()),
                ));
            }
            Some(key) => {
                let span = key.span();
                let key = key.into_inner();
                if key == "subject" {
                    CanaryKey::Subject
                } else if !key.is_empty() && key.split('.').all(|part| !part.is_empty()) {
                    CanaryKey::Field(key)
                } else {
                    return Err(source.error_at(
                        span,
                        format!("{prefix}.key"),
                        format!("invalid canary key {key:?}"),
                        Some("write \"subject\", or a dotted path into the JSON payload like \"user.id\"".to_owned()),
                    ));
                }
            }
        };
        let defaults = Rules::default();
        let share = match self.share {
            None if self.mode == Mode::Shadow => 1.0,
            None => 0.1,
            Some(share) if share.get_ref().0 > 0.0 => share.into_inner().0,
            Some(share) => {
                return Err(source.error_at(
                    share.span(),
                    format!("{prefix}.share"),
                    "a share of 0 gives the candidate no events",
                    Some("write a share above 0 and at most 1, like 0.1; to stop the candidate, remove [stages.candidate]".to_owned()),
                ));
            }
        };
        Ok(Candidate {
            plugin,
            config,
            limits,
            grants,
            mode: self.mode,
            share,
            key,
            decide: self.decide.unwrap_or(Decide::Auto),
            rules: Rules {
                min_events: self.min_events.map_or(defaults.min_events, |n| n.0 as u64),
                max_diff_rate: self.max_diff_rate.map_or(defaults.max_diff_rate, |r| r.into_inner().0),
                max_error_rate: self.max_error_rate.map_or(defaults.max_error_rate, |r| r.0),
                max_slowdown: self.max_slowdown.map_or(defaults.max_slowdown, |s| s.0),
            },
            diff_subject: self.diff_subject.map(|s| s.into_inner().0),
        })
    }
}

/// A number from 0 to 1: a share or a rate.
struct Fraction(f64);

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(NumberVisitor { what: "a number from 0 to 1, like 0.1", min: 0.0, max: 1.0 })
            .map(Fraction)
    }
}

/// `max_slowdown`: a factor of at least 1.
struct Slowdown(f64);

impl<'de> Deserialize<'de> for Slowdown {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(NumberVisitor { what: "a factor of at least 1, like 1.5", min: 1.0, max: f64::MAX })
            .map(Slowdown)
    }
}

#[derive(Clone, Copy)]
struct NumberVisitor {
    what: &'static str,
    min: f64,
    max: f64,
}

impl Visitor<'_> for NumberVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<f64, E> {
        if n.is_finite() && (self.min..=self.max).contains(&n) { Ok(n) } else { Err(E::invalid_value(Unexpected::Float(n), &self)) }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<f64, E> {
        self.visit_f64(n as f64).map_err(|_: E| E::invalid_value(Unexpected::Signed(n), &self))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<f64, E> {
        self.visit_f64(n as f64).map_err(|_: E| E::invalid_value(Unexpected::Unsigned(n), &self))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Pipeline, parse_pipeline};

    fn parse(candidate: &str) -> Result<Pipeline, ConfigError> {
        let dir = std::env::temp_dir().join(format!("weir-candidate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["live.wasm", "next.wasm"] {
            std::fs::write(dir.join(file), b"\0asm").unwrap();
        }
        let text = format!(
            "name = \"p\"\n[source]\nsubject = \"in\"\n[[stages]]\nname = \"map\"\nplugin = \"live.wasm\"\nlimits = {{ timeout = \"20ms\" }}\nconfig = {{ a = 1 }}\n[stages.candidate]\nplugin = \"next.wasm\"\n{candidate}\n[sink]\nsubject = \"out\"\n"
        );
        parse_pipeline(&text, &dir.join(Path::new("p.toml")))
    }

    #[test]
    fn a_candidate_takes_what_it_does_not_say_from_its_stage() {
        let pipeline = parse("mode = \"shadow\"").unwrap();
        let c = pipeline.stages[0].candidate.as_ref().unwrap();
        assert!(c.plugin.ends_with("next.wasm"));
        assert_eq!(c.config, serde_json::json!({ "a": 1 }));
        assert_eq!(c.limits, pipeline.stages[0].limits);
        assert_eq!((c.mode, c.share, c.decide), (Mode::Shadow, 1.0, Decide::Auto));
        assert_eq!(c.rules, Rules::default());

        let pipeline = parse("mode = \"canary\"\nkey = \"user.id\"\nconfig = { a = 2 }\nlimits = { memory = \"16MiB\" }\nmin_events = 50").unwrap();
        let c = pipeline.stages[0].candidate.as_ref().unwrap();
        assert_eq!((c.share, &c.key), (0.1, &CanaryKey::Field("user.id".into())));
        assert_eq!(c.config, serde_json::json!({ "a": 2 }));
        assert_eq!(c.limits.timeout, std::time::Duration::from_millis(20), "the stage's timeout");
        assert_eq!(c.limits.memory, 16 << 20);
        assert_eq!((c.rules.min_events, c.rules.judge_after()), (50, 50));
    }

    #[test]
    fn errors_name_the_candidates_key() {
        for (text, key, words) in [
            ("mode = \"blue\"", "stages[0].candidate.mode", "unknown variant"),
            ("mode = \"shadow\"\nkey = \"user\"", "stages[0].candidate.key", "only applies to mode = \"canary\""),
            ("mode = \"canary\"\nmax_diff_rate = 0.1", "stages[0].candidate.max_diff_rate", "only applies to mode = \"shadow\""),
            ("mode = \"canary\"\nshare = 0", "stages[0].candidate.share", "a share of 0"),
            ("mode = \"canary\"\nshare = 1.5", "stages[0].candidate.share", "from 0 to 1"),
            ("mode = \"canary\"\nkey = \"a..b\"", "stages[0].candidate.key", "invalid canary key"),
            ("mode = \"shadow\"\nmax_slowdown = 0.5", "stages[0].candidate.max_slowdown", "at least 1"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.to_string().contains(words), "{text}: {e}");
            assert!(e.line.is_some(), "{text}: {e}");
        }
    }
}
