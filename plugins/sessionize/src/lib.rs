//! `sessionize`: groups each visitor's events into sessions separated by
//! inactivity, tags every event with its session, and emits a summary when
//! a session ends.
//!
//! ```toml
//! [[stages]]
//! name = "sessions"
//! plugin = "../plugins/sessionize.wasm"
//! timer = "10s"
//! config = { key = "visitor_id", gap = "30m", time = "ts", subject = "sessions.ended" }
//! ```
//!
//! See `README.md` for the whole story; in short:
//!
//! - `key` (required): the visitor: a payload field path, `header:<name>`,
//!   `subject`, `subject:<n>`, or a list of them,
//! - `gap` (required): the inactivity that ends a session (`"30m"`),
//! - `time` (optional): the payload field with the event's time (ms since
//!   1970, or RFC 3339); without it, the time the event is processed (needs
//!   `grants = { clock = true }`),
//! - `subject` (required): where session summaries are published.
//!
//! Every event passes through with the header `weir-session: <key>-<start>`.
//! A summary `{"session", "key", "start", "end", "events"}` is emitted by
//! the timer once `end + gap` has passed, or at once, before the event, when
//! the visitor's next event comes after the gap.
//!
//! State: `s/<key>` holds the open session; `i/<bucket>/<key>` indexes it
//! by the time of its last event divided by `gap` (16 digits), so that the
//! timer finds ended sessions in key order.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weir_keyed::{Clock, Fields, Key};
use weir_sdk::{Config, Error, Event, Output, Stage, state};

/// The most index keys one tick looks at; the next tick goes on.
pub const SCAN_PER_TICK: u32 = 10_000;

/// The header that carries the session id.
pub const SESSION_HEADER: &str = "weir-session";

/// The stage: its settings, parsed once.
pub struct Sessionize {
    key: Key,
    gap: u64,
    clock: Clock,
    subject: String,
    fields: Fields,
}

/// An open session, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    id: String,
    start: u64,
    last: u64,
    events: u64,
}

const KEYS: &[&str] = &["key", "gap", "time", "subject"];

impl Stage for Sessionize {
    fn init(config: Config) -> Result<Self, String> {
        let table = weir_keyed::config_table(&config, KEYS)?;
        let key = Key::from_config(table.get("key"), "key")?;
        let gap = weir_keyed::duration(table.get("gap"), "gap", false)?;
        let clock = Clock::from_config(table.get("time"), "sessionize")?;
        let subject = match table.get("subject") {
            Some(Value::String(subject)) => {
                weir_keyed::check_subject(subject, "subject")?;
                subject.clone()
            }
            None | Some(Value::Null) => return Err("config.subject is required: where session summaries are published".into()),
            Some(other) => return Err(format!("config.subject: expected a string, found {other}")),
        };
        let fields = Fields::new(key.paths().chain(clock.path()));
        Ok(Sessionize { key, gap, clock, subject, fields })
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        let payload = self.fields.read(&event)?;
        let key = Key::text(&self.key.values(&event, &payload)?);
        let time = self.clock.time(&payload)?;
        let stored = session_key(&key);
        let mut ended = None;
        let session = match state::get_json::<Session>(&stored)? {
            Some(open) if time >= open.last + self.gap => {
                // The visitor came back after the gap: the old session ends
                // here, with this event, rather than at the next tick.
                state::delete(&self.index_key(open.last, &key));
                ended = Some(self.summary(&key, &open)?);
                self.start(&key, time)
            }
            Some(open) if time + self.gap <= open.start => {
                return Err(Error::invalid(format!(
                    "late: the event's time {time} is {} ms or more before session {:?}, which started at {}",
                    self.gap, open.id, open.start
                )));
            }
            Some(mut open) => {
                let old_index = self.index_key(open.last, &key);
                open.start = open.start.min(time);
                open.last = open.last.max(time);
                open.events += 1;
                let new_index = self.index_key(open.last, &key);
                if new_index != old_index {
                    state::delete(&old_index);
                    state::set(&new_index, "");
                }
                open
            }
            None => self.start(&key, time),
        };
        state::set_json(&stored, &session)?;
        let event = event.with_header(SESSION_HEADER, session.id);
        Ok(match ended {
            Some(summary) => Output::Many(vec![summary, event]),
            None => Output::One(event),
        })
    }

    /// Emits a summary of, and forgets, every session whose last event was
    /// `gap` or more before `now`, looking at most at [`SCAN_PER_TICK`]
    /// index keys.
    fn tick(&mut self, now: u64) -> Result<Vec<Event>, String> {
        let mut out = Vec::new();
        for index in state::keys(INDEX, SCAN_PER_TICK) {
            let Some((bucket, key)) = parse_index_key(&index) else {
                weir_sdk::warn!("state key {index:?} is not a session index key of this version; deleted");
                state::delete(&index);
                continue;
            };
            // Every session in this bucket, and in the later ones, had an
            // event at `bucket * gap` or later: none of them has ended.
            if bucket.saturating_mul(self.gap).saturating_add(self.gap) > now {
                break;
            }
            let stored = session_key(key);
            let session = match state::get_json::<Session>(&stored) {
                Ok(Some(session)) => session,
                Ok(None) => {
                    state::delete(&index);
                    continue;
                }
                // A tick that failed on it would fail forever: reset it.
                Err(error) => {
                    weir_sdk::warn!("{error}; the session is dropped");
                    state::delete(&index);
                    state::delete(&stored);
                    continue;
                }
            };
            if session.last / self.gap != bucket {
                // An index entry the session has moved on from.
                state::delete(&index);
                continue;
            }
            if session.last.saturating_add(self.gap) <= now {
                out.push(self.summary(key, &session).map_err(|e| e.to_string())?);
                state::delete(&index);
                state::delete(&stored);
            }
        }
        Ok(out)
    }
}

weir_sdk::export_stage!(Sessionize);

const SESSIONS: &str = "s/";
const INDEX: &str = "i/";

fn session_key(key: &str) -> String {
    format!("{SESSIONS}{key}")
}

/// The bucket and the visitor's key of an `i/<bucket>/<key>` key.
fn parse_index_key(index: &str) -> Option<(u64, &str)> {
    let (bucket, key) = index.strip_prefix(INDEX)?.split_once('/')?;
    Some((bucket.parse().ok()?, key))
}

impl Sessionize {
    /// Starts a session at `time`, and indexes it.
    fn start(&self, key: &str, time: u64) -> Session {
        state::set(&self.index_key(time, key), "");
        // The id goes into a header, which cannot hold control characters.
        let id = format!("{key}-{time}").replace(char::is_control, "_");
        Session { id, start: time, last: time, events: 1 }
    }

    fn index_key(&self, last: u64, key: &str) -> String {
        format!("{INDEX}{:016}/{key}", last / self.gap)
    }

    /// The event that says a session ended.
    fn summary(&self, key: &str, session: &Session) -> Result<Event, Error> {
        let payload = serde_json::json!({
            "session": session.id,
            "key": key,
            "start": session.start,
            "end": session.last,
            "events": session.events,
        });
        Ok(Event::new_json(self.subject.clone(), &payload)?.with_header(SESSION_HEADER, session.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use weir_sdk::serde_json::{Value, json};
    use weir_sdk::{Error, Event, testing};

    use super::Sessionize;

    const MINUTE: u64 = 60_000;
    const T0: u64 = 1_764_147_600_000;
    const CONFIG: &str = r#"{"key": "visitor", "gap": "30m", "time": "ts", "subject": "sessions.ended"}"#;

    fn visit(visitor: &str, ts: u64) -> Event {
        Event::new_json("tracking.page", &json!({ "visitor": visitor, "ts": ts })).unwrap()
    }

    /// The session header of each event's pass-through output.
    fn sessions(stage: &mut Sessionize, events: Vec<Event>) -> Vec<String> {
        testing::process(stage, events)
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().last().unwrap().header("weir-session").unwrap().to_owned())
            .collect()
    }

    fn payload(event: &Event) -> Value {
        event.json_value().unwrap()
    }

    #[test]
    fn events_within_the_gap_share_a_session_and_the_timer_ends_it() {
        let mut stage = testing::init::<Sessionize>(CONFIG).unwrap();
        let ids = sessions(
            &mut stage,
            vec![visit("ada", T0), visit("bob", T0 + MINUTE), visit("ada", T0 + 29 * MINUTE), visit("ada", T0 + 58 * MINUTE)],
        );
        let ada = format!("ada-{T0}");
        assert_eq!(ids, [ada.clone(), format!("bob-{}", T0 + MINUTE), ada.clone(), ada.clone()]);

        // bob's session ends 30 minutes after his only event; ada's has gone on.
        assert_eq!(testing::tick(&mut stage, T0 + 31 * MINUTE - 1), Ok(vec![]));
        let out = testing::tick(&mut stage, T0 + 31 * MINUTE).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subject, "sessions.ended");
        assert_eq!(out[0].header("weir-session"), Some(format!("bob-{}", T0 + MINUTE).as_str()));
        assert_eq!(
            payload(&out[0]),
            json!({ "session": format!("bob-{}", T0 + MINUTE), "key": "bob", "start": T0 + MINUTE, "end": T0 + MINUTE, "events": 1 })
        );

        let out = testing::tick(&mut stage, T0 + 88 * MINUTE).unwrap();
        assert_eq!(payload(&out[0]), json!({ "session": ada, "key": "ada", "start": T0, "end": T0 + 58 * MINUTE, "events": 3 }));
        assert_eq!(testing::state_keys(""), Vec::<String>::new());
    }

    #[test]
    fn an_event_after_the_gap_ends_the_old_session_at_once_and_starts_a_new_one() {
        let mut stage = testing::init::<Sessionize>(CONFIG).unwrap();
        testing::process(&mut stage, vec![visit("ada", T0), visit("ada", T0 + MINUTE)]).unwrap();
        let event = visit("ada", T0 + 31 * MINUTE).with_header("h", "v");
        let out = testing::process(&mut stage, vec![event]).unwrap().remove(0).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].subject, "sessions.ended");
        assert_eq!(payload(&out[0])["events"], 2);
        assert_eq!(payload(&out[0])["end"], T0 + MINUTE);
        // The event itself passes through, unchanged but for its session.
        let new = format!("ada-{}", T0 + 31 * MINUTE);
        assert_eq!(out[1].header("weir-session"), Some(new.as_str()));
        assert_eq!(out[1].header("h"), Some("v"));
        assert_eq!(out[1].subject, "tracking.page");
        assert_eq!(payload(&out[1]), json!({ "visitor": "ada", "ts": T0 + 31 * MINUTE }));
        // Only the new session is left for the timer.
        let out = testing::tick(&mut stage, 1 << 53).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(payload(&out[0])["session"], new);
    }

    #[test]
    fn out_of_order_events_within_the_gap_extend_the_session_and_keep_its_id() {
        let mut stage = testing::init::<Sessionize>(CONFIG).unwrap();
        let ids = sessions(&mut stage, vec![visit("ada", T0 + 10 * MINUTE), visit("ada", T0 + MINUTE), visit("ada", T0 + 39 * MINUTE)]);
        assert!(ids.iter().all(|id| *id == format!("ada-{}", T0 + 10 * MINUTE)), "{ids:?}");
        let out = testing::tick(&mut stage, 1 << 53).unwrap();
        assert_eq!(payload(&out[0])["start"], T0 + MINUTE);
        assert_eq!(payload(&out[0])["end"], T0 + 39 * MINUTE);
        assert_eq!(payload(&out[0])["events"], 3);
        // An event a whole gap before the session started is late.
        testing::process(&mut stage, vec![visit("bob", T0 + 60 * MINUTE)]).unwrap();
        let late = testing::process(&mut stage, vec![visit("bob", T0 + 30 * MINUTE)]).unwrap().remove(0).unwrap_err();
        assert_eq!(
            late.message(),
            format!(
                "late: the event's time {} is 1800000 ms or more before session \"bob-{}\", which started at {}",
                T0 + 30 * MINUTE,
                T0 + 60 * MINUTE,
                T0 + 60 * MINUTE
            )
        );
    }

    #[test]
    fn a_refused_event_leaves_the_session_as_it_was() {
        let mut stage = testing::init::<Sessionize>(CONFIG).unwrap();
        testing::process(&mut stage, vec![visit("ada", T0)]).unwrap();
        let before = testing::state_get("s/ada");
        let out = testing::process(&mut stage, vec![Event::new("tracking.page", r#"{"visitor": "ada", "ts": "later"}"#)]).unwrap();
        assert!(out[0].is_err());
        assert_eq!(testing::state_get("s/ada"), before);
    }

    #[test]
    fn one_tick_looks_at_most_at_ten_thousand_sessions() {
        let mut stage = testing::init::<Sessionize>(r#"{"key": "visitor", "gap": "1m", "time": "ts", "subject": "s"}"#).unwrap();
        testing::process(&mut stage, (0..10_004).map(|i| visit(&format!("v{i}"), T0)).collect()).unwrap();
        assert_eq!(testing::tick(&mut stage, 1 << 53).unwrap().len(), 10_000);
        assert_eq!(testing::tick(&mut stage, 1 << 53).unwrap().len(), 4);
        assert_eq!(testing::state_keys(""), Vec::<String>::new());
    }

    #[test]
    fn a_session_an_older_version_wrote_is_reported_and_reset_by_the_tick() {
        let mut stage = testing::init::<Sessionize>(CONFIG).unwrap();
        testing::state_put("s/ada", r#"{"since": 1}"#);
        testing::state_put(&format!("i/{:016}/ada", T0 / (30 * MINUTE)), "");
        let error = testing::process(&mut stage, vec![visit("ada", T0)]).unwrap().remove(0).unwrap_err();
        assert!(
            error
                .message()
                .starts_with(r#"state "s/ada" does not decode as the stage expects (written by an older version?): "#),
            "{error}"
        );
        assert_eq!(testing::tick(&mut stage, 1 << 53), Ok(vec![]));
        assert_eq!(testing::state_keys(""), Vec::<String>::new());
    }

    #[test]
    fn a_session_id_fits_in_a_header() {
        let mut stage = testing::init::<Sessionize>(CONFIG).unwrap();
        assert_eq!(sessions(&mut stage, vec![visit("a\r\nb", T0)]), [format!("a__b-{T0}")]);
        let multi = r#"{"key": ["visitor", "header:shop"], "gap": "30m", "time": "ts", "subject": "s"}"#;
        let mut stage = testing::init::<Sessionize>(multi).unwrap();
        assert_eq!(sessions(&mut stage, vec![visit("ada", T0).with_header("shop", "s-1")]), [format!("[\"ada\",\"s-1\"]-{T0}")]);
    }

    #[test]
    fn bad_events_are_invalid_with_the_reason() {
        let run = |payload: &str| testing::run_one::<Sessionize>(CONFIG, Event::new("tracking.page", payload)).unwrap_err();
        assert_eq!(run(r#"{"ts": 1}"#), Error::invalid(r#"payload has no field "visitor" (the key)"#));
        assert_eq!(run(r#"{"visitor": null, "ts": 1}"#), Error::invalid(r#"payload has no field "visitor" (the key)"#));
        assert_eq!(run(r#"{"visitor": "ada"}"#), Error::invalid(r#"payload has no field "ts" (the event time)"#));
        assert!(run(r#"{"visitor": "ada", "ts": [1]}"#).message().contains("is [1], not milliseconds"));
        assert!(run("").message().starts_with("payload is not valid JSON"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let error = |config: &str| testing::init::<Sessionize>(config).err().unwrap();
        assert!(error(r#"{"gap": "1m", "subject": "s"}"#).starts_with("config.key is required"));
        assert!(error(r#"{"key": "v", "subject": "s"}"#).starts_with("config.gap is required"));
        assert_eq!(error(r#"{"key": "v", "gap": "1m"}"#), "config.subject is required: where session summaries are published");
        assert!(error(r#"{"key": "v", "gap": "1m", "subject": "sessions.>"}"#).starts_with(r#"config.subject: "sessions.>" is not a valid subject"#));
        assert_eq!(
            error(r#"{"key": "v", "gap": "1m", "subject": "s", "gpa": 1}"#),
            "config.gpa: unknown key; valid: key, gap, time, subject"
        );
    }
}
