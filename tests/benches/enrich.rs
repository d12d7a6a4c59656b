//! Per-event cost of `bi-enrich` in one process: the wasm stage (KV lookups
//! through weir's host import, served from memory as in `weir run`) against
//! the same crate compiled natively with the same lookups. No NATS.
//!
//! The events carry a realistic mix of user agents: a few hundred, made from
//! real browser, app, bot and HTTP-library agents across versions, operating
//! systems and devices, drawn with a Zipf distribution (a seeded generator,
//! so every run sees the same sequence). Both sides run the same code on
//! the same events, each with its own cache, in three cases: the default
//! `agent_cache` with a fresh stage each round, whose cache starts empty
//! and parses every agent once (the target is judged on this one); the
//! same with one stage for all rounds, whose cache has seen every agent
//! after the first, as in a long-running worker with a stable mix; and
//! `agent_cache = 0`, which parses every agent every time.

// The weir binary's allocator, for weir and the native baseline alike.
#[global_allocator]
static ALLOCATOR: weir::Allocator = weir::ALLOCATOR;

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::config;
use weir::engine::{Engine, EngineOptions, KvSource};
use weir::event::Event;
use weir::pipeline::{Blueprint, Outcome};
use weir_bi_enrich::{AgentCache, BiEnrich, Settings};
use weir_tests::harness::toml_str;
use weir_tests::plugins;

const EVENTS: usize = 64 * 256;
const ROUNDS: usize = 9;
/// Exponent of the Zipf distribution of agents: the k-th most common agent
/// is seen 1/k as often as the first.
const ZIPF_S: f64 = 1.0;
const SEED: u64 = 0x5EED_F00D_A6E5;

struct Reference(HashMap<(String, String), Vec<u8>>);

impl KvSource for Reference {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(&(bucket.to_owned(), key.to_owned())).cloned())
    }
}

fn reference() -> Reference {
    let mut kv = HashMap::new();
    for i in 0..100 {
        let shop = format!(r#"{{"name":"Shop {i}","country":"DE","commission_rate":0.{:02}}}"#, i % 20 + 1);
        kv.insert(("shops".to_owned(), format!("s-{i}")), shop.into_bytes());
    }
    kv.insert(("rates".to_owned(), "USD".to_owned()), br#"{"rate":0.92}"#.to_vec());
    Reference(kv)
}

/// SplitMix64: a small, seeded, good-enough generator (no `rand` needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The agents: real agents of each kind, with the parts that vary in the
/// wild (browser and OS versions, device models, app builds) varied.
fn agents() -> Vec<String> {
    let mut agents = Vec::new();
    let mut add = |agent: String| agents.push(agent);

    // Desktop Chrome (its reduced agent has a frozen "{major}.0.0.0"),
    // Edge and Opera on Chromium, Firefox, Safari.
    for v in 109..=131 {
        add(format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
        ));
        add(format!(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
        ));
        add(format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"));
        for build in [1, 2] {
            add(format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.{}.{}",
                2000 + 35 * (v - 109),
                40 + 17 * build
            ));
        }
    }
    for v in 100..=116 {
        add(format!(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.0.0 Safari/537.36 OPR/{v}.0.0.0",
            v + 14
        ));
    }
    for v in 115..=133 {
        add(format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"));
        add(format!("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"));
        add(format!("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"));
    }
    let safari = ["16.0", "16.1", "16.2", "16.3", "16.4", "16.5", "16.6", "17.0", "17.1", "17.2", "17.3", "17.4", "17.5", "17.6", "18.0", "18.1", "18.2"];
    for version in safari {
        add(format!(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{version} Safari/605.1.15"
        ));
    }

    // iOS: Safari on iPhone and iPad, Chrome and Firefox on iPhone, and the
    // Instagram and Facebook in-app browsers (one agent per device, OS and
    // locale, which makes a long tail).
    let ios =
        ["15_8", "16_1", "16_3", "16_5", "16_6", "16_7_10", "17_0", "17_1_2", "17_2_1", "17_3", "17_4_1", "17_5_1", "17_6_1", "18_0", "18_1", "18_1_1", "18_2"];
    for os in ios {
        let version = os.splitn(3, '_').take(2).collect::<Vec<_>>().join(".");
        add(format!(
            "Mozilla/5.0 (iPhone; CPU iPhone OS {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{version} Mobile/15E148 Safari/604.1"
        ));
        add(format!(
            "Mozilla/5.0 (iPad; CPU OS {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{version} Mobile/15E148 Safari/604.1"
        ));
    }
    for (i, v) in (118..=131).enumerate() {
        let os = ios[6 + i % 11];
        add(format!(
            "Mozilla/5.0 (iPhone; CPU iPhone OS {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.{}.{} Mobile/15E148 Safari/604.1",
            6000 + 45 * (v - 118),
            100 + i
        ));
        add(format!(
            "Mozilla/5.0 (iPhone; CPU iPhone OS {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/{v}.0 Mobile/15E148 Safari/605.1.15"
        ));
    }
    let iphones =
        [("iPhone13,2", "1170x2532"), ("iPhone14,5", "1170x2532"), ("iPhone15,2", "1179x2556"), ("iPhone15,3", "1290x2796"), ("iPhone16,1", "1179x2556")];
    let locales = ["en_US; en", "de_DE; de", "fr_FR; fr", "es_ES; es"];
    for (d, (device, screen)) in iphones.iter().enumerate() {
        for (l, locale) in locales.iter().enumerate() {
            let os = ios[7 + (d + l) % 10];
            add(format!(
                "Mozilla/5.0 (iPhone; CPU iPhone OS {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 312.0.0.{}.{} ({device}; iOS {os}; {locale}; scale=3.00; {screen}; 5{:08})",
                20 + l,
                110 + d,
                41_635_890 + 7 * d + l
            ));
            add(format!(
                "Mozilla/5.0 (iPhone; CPU iPhone OS {os} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/21B101 [FBAN/FBIOS;FBAV/44{d}.0.0.{}.{l};FBBV/5{:08};FBDV/{device};FBMD/iPhone;FBSN/iOS;FBSV/{};FBSS/3;FBID/phone;FBLC/{};FBOP/5;FBRV/0]",
                30 + l,
                61_000_000 + 3 * d + l,
                os.replace('_', "."),
                &locale[..5]
            ));
        }
    }

    // Android: Chrome on phones (the reduced "Android 10; K" agent and
    // older ones naming the model), Samsung Internet, tablets, and app
    // WebViews.
    for v in 112..=131 {
        add(format!(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"
        ));
    }
    let phones = [
        ("13", "Pixel 7"),
        ("14", "Pixel 8"),
        ("14", "SM-S918B"),
        ("13", "SM-A536B"),
        ("12", "SM-G991B"),
        ("13", "M2101K6G"),
        ("12", "CPH2305"),
        ("11", "moto g(60)"),
        ("13", "2201116SG"),
        ("12", "RMX3363"),
    ];
    for (a, (android, model)) in phones.iter().enumerate() {
        for v in [116, 119, 122, 125] {
            add(format!(
                "Mozilla/5.0 (Linux; Android {android}; {model}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{}.{} Mobile Safari/537.36",
                5800 + 40 * (v - 116),
                60 + a
            ));
        }
        add(format!(
            "Mozilla/5.0 (Linux; Android {android}; {model} Build/TP1A.220624.0{a:02}; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/441.0.0.33.1{a:02};]"
        ));
    }
    for samsung in [20, 21, 22, 23, 24, 25] {
        for model in ["SM-S918B", "SM-A536B", "SM-G991B", "SM-S911B"] {
            add(format!(
                "Mozilla/5.0 (Linux; Android 13; {model}) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/{samsung}.0 Chrome/{}.0.0.0 Mobile Safari/537.36",
                96 + 4 * samsung - 70
            ));
        }
    }
    for model in ["SM-X700", "SM-T870", "Lenovo TB-X606F"] {
        for v in [117, 121, 125, 129] {
            add(format!(
                "Mozilla/5.0 (Linux; Android 13; {model}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
            ));
        }
    }

    // Crawlers, link previews and HTTP libraries.
    for v in [127, 128, 129, 130, 131] {
        add(format!(
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.6778.{} Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            60 + v
        ));
        add(format!(
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/{v}.0.6778.{} Safari/537.36",
            60 + v
        ));
    }
    for bot in [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "WhatsApp/2.23.20.0",
    ] {
        add(bot.to_owned());
    }
    for (major, minors) in [(7, &[68, 74, 81, 88][..]), (8, &[0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11][..])] {
        for minor in minors {
            add(format!("curl/{major}.{minor}.{}", minor % 2));
        }
    }
    for minor in 25..=32 {
        for patch in 0..=2 {
            add(format!("python-requests/2.{minor}.{patch}"));
        }
    }
    for minor in 0..=7 {
        add(format!("axios/1.{minor}.2"));
    }
    for minor in 9..=12 {
        add(format!("okhttp/4.{minor}.0"));
    }
    for patch in 1..=4 {
        add(format!("Wget/1.21.{patch}"));
    }
    add("Go-http-client/1.1".to_owned());
    add("Go-http-client/2.0".to_owned());
    add("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)".to_owned());
    add("Java/17.0.9".to_owned());
    add("Apache-HttpClient/4.5.14 (Java/17.0.9)".to_owned());

    let distinct: HashSet<&String> = agents.iter().collect();
    assert_eq!(distinct.len(), agents.len(), "every agent is distinct");
    assert!(agents.iter().all(|a| !a.contains(['"', '\\'])), "agents go into JSON as they are");
    assert!(WARM_UP.iter().all(|w| !agents.iter().any(|a| a == w)), "warm-up agents are not in the mix");
    agents
}

/// `EVENTS` agents drawn from `agents` with a Zipf distribution; which agent
/// is the most common is shuffled, with the same seed every run.
fn draw(agents: &[String], rng: &mut Rng) -> Vec<String> {
    let mut ranked: Vec<&String> = agents.iter().collect();
    for i in (1..ranked.len()).rev() {
        ranked.swap(i, rng.below(i + 1));
    }
    let mut cumulative = Vec::with_capacity(ranked.len());
    let mut total = 0.0;
    for k in 1..=ranked.len() {
        total += 1.0 / (k as f64).powf(ZIPF_S);
        cumulative.push(total);
    }
    (0..EVENTS)
        .map(|_| {
            let x = rng.unit() * total;
            let k = cumulative.partition_point(|&c| c <= x).min(ranked.len() - 1);
            ranked[k].clone()
        })
        .collect()
}

/// Agents of each kind that are not in the mix: a fresh stage enriches one
/// event with each before a round, so that woothee's regexes are compiled
/// (lazily, on first use) as in any worker that has been running, while
/// the cache holds none of the mix.
const WARM_UP: &[&str] = &[
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:99.0) Gecko/20100101 Firefox/99.0",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.0.0 Safari/537.36 Edg/99.0.1.2",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.0.0 Safari/537.36 OPR/85.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 14_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.8 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 9; SM-G960F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; ExampleBot/1.0; +http://example.com/bot)",
    "curl/7.58.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 14_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 200.0.0.0.1",
];

fn event(i: usize, agent: &str) -> Vec<u8> {
    format!(
        r#"{{"id":{i},"shop_id":"s-{}","price":{}.95,"currency":"USD","ts":"2026-11-26T10:{:02}:00Z","user_agent":"{agent}"}}"#,
        i % 100,
        i % 500,
        i % 60
    )
    .into_bytes()
}

/// The events of `WARM_UP`.
fn warm_up() -> Vec<Vec<u8>> {
    WARM_UP.iter().map(|agent| event(0, agent)).collect()
}

/// Best ns/event of each side over `ROUNDS` rounds, after one to warm up.
/// The sides take turns, round by round, so that a busy spell of the
/// machine slows both rather than one.
fn best_of(mut wasm: impl FnMut() -> Duration, mut native: impl FnMut() -> Duration) -> (f64, f64) {
    wasm();
    native();
    let (mut w, mut n) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        w = w.min(wasm());
        n = n.min(native());
    }
    let per_event = |d: Duration| d.as_nanos() as f64 / EVENTS as f64;
    (per_event(w), per_event(n))
}

/// Whether each round has a stage of its own, which starts with an empty
/// cache, or all share one, whose cache has seen every agent after the
/// first.
#[derive(Clone, Copy)]
enum Stages {
    Fresh,
    Shared,
}

/// The wasm side, the stage with this `config` table: each call times one
/// round through the chain.
fn wasm<'a>(engine: &Engine, config: &str, stages: Stages, payloads: &'a [Vec<u8>]) -> impl FnMut() -> Duration + 'a {
    let text = format!(
        "name = \"bench\"\n[source]\nsubject = \"in\"\n[[stages]]\nname = \"enrich\"\nplugin = {}\ngrants = {{ kv = [\"shops\", \"rates\"] }}\nconfig = {config}\n[sink]\nsubject = \"out\"\n",
        toml_str(plugins::BI_ENRICH)
    );
    let pipeline = config::parse_pipeline(&text, Path::new("bench.toml")).expect("pipeline");
    let (blueprint, _) = Blueprint::build(engine, &pipeline).expect("builds");
    let warm_up = warm_up();
    // A chain instantiates its stage on first use.
    let mut shared = blueprint.chain();
    move || {
        let mut fresh;
        let chain = match stages {
            Stages::Fresh => {
                fresh = blueprint.chain();
                &mut fresh
            }
            Stages::Shared => &mut shared,
        };
        // Instantiates and warms up the stage outside the timing.
        let out = chain.process(warm_up.iter().map(|p| Event::new("in", p.clone())).collect());
        assert!(out.iter().all(|o| matches!(o, Outcome::Done(o) if o.len() == 1)), "{out:?}");
        let batches: Vec<Vec<Event>> = payloads.chunks(64).map(|c| c.iter().map(|p| Event::new("in", p.clone())).collect()).collect();
        let started = Instant::now();
        for b in batches {
            let out = chain.process(b);
            assert!(matches!(out.last(), Some(Outcome::Done(o)) if o.len() == 1), "{:?}", out.last());
            black_box(out);
        }
        started.elapsed()
    }
}

/// The native side: each call times one round through the stage.
fn native<'a>(settings: Settings, stages: Stages, kv: &'a Reference, payloads: &'a [Vec<u8>]) -> impl FnMut() -> Duration + 'a {
    let mut shared = BiEnrich::new(settings.clone());
    move || {
        let lookup = |bucket: &str, key: &str| kv.get(bucket, key);
        let mut fresh;
        let stage = match stages {
            Stages::Fresh => {
                fresh = BiEnrich::new(settings.clone());
                &mut fresh
            }
            Stages::Shared => &mut shared,
        };
        for p in warm_up() {
            stage.enrich(&p, &lookup).expect("enriches");
        }
        let started = Instant::now();
        for p in payloads {
            black_box(stage.enrich(p, &lookup).expect("enriches"));
        }
        started.elapsed()
    }
}

fn main() {
    // SAFETY: single-threaded here, before any other thread starts.
    unsafe { std::env::set_var("RUST_BACKTRACE", "0") };
    let kv = Arc::new(reference());
    let agents = agents();
    let drawn = draw(&agents, &mut Rng(SEED));
    let payloads: Vec<Vec<u8>> = drawn.iter().enumerate().map(|(i, agent)| event(i, agent)).collect();

    let settings = Settings::from_config(&weir_sdk::Config::empty()).expect("defaults");
    let capacity = settings.agent_cache;
    // What the cache does with this sequence: the same code both sides run.
    let mut cache = AgentCache::new(capacity);
    for agent in WARM_UP {
        cache.classify(agent);
    }
    let warm = (cache.hits(), cache.misses());
    let mut classes: HashMap<&str, usize> = HashMap::new();
    for agent in &drawn {
        *classes.entry(cache.classify(agent).class).or_default() += 1;
    }
    let (hits, misses) = (cache.hits() - warm.0, cache.misses() - warm.1);
    let hit_rate = hits as f64 / EVENTS as f64;
    let distinct = drawn.iter().collect::<HashSet<_>>().len();
    let mut classes: Vec<(&str, usize)> = classes.into_iter().collect();
    classes.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let classes: Vec<String> = classes
        .iter()
        .map(|(class, n)| format!("{class} {:.0}%", 100.0 * *n as f64 / EVENTS as f64))
        .collect();

    let engine = Engine::new(&EngineOptions { cache_dir: None, cache_size: None, kv: Some(kv.clone()) }).expect("engine");
    let uncached = Settings { agent_cache: 0, ..settings.clone() };
    let rows = [
        (
            format!("{capacity} (default), a fresh stage each round"),
            best_of(wasm(&engine, "{}", Stages::Fresh, &payloads), native(settings.clone(), Stages::Fresh, &kv, &payloads)),
        ),
        (
            format!("{capacity} (default), one stage, every agent seen"),
            best_of(wasm(&engine, "{}", Stages::Shared, &payloads), native(settings, Stages::Shared, &kv, &payloads)),
        ),
        (
            "0 (no cache)".to_owned(),
            best_of(wasm(&engine, "{ agent_cache = 0 }", Stages::Fresh, &payloads), native(uncached, Stages::Fresh, &kv, &payloads)),
        ),
    ];

    println!("bi-enrich: {EVENTS} events, batch 64, best of {ROUNDS} rounds (wasm and native in turns), KV served from memory");
    println!(
        "user agents: {} in the mix, {distinct} distinct among the events (Zipf, s = {ZIPF_S}): {}",
        agents.len(),
        classes.join(", ")
    );
    println!(
        "agent cache hit rate: {:.1}% ({misses} parses) in a round from a fresh stage, 100% from one that has seen every agent",
        100.0 * hit_rate,
    );
    println!();
    println!("| agent_cache | wasm ns/event | native ns/event | ratio |");
    println!("|---|---:|---:|---:|");
    for (case, (wasm, native)) in &rows {
        println!("| {case} | {wasm:.0} | {native:.0} | {:.2} |", wasm / native);
    }
    println!();
    let (_, (wasm, native)) = &rows[0];
    println!("target: wasm at most 2x native with the default config: {}", if wasm / native <= 2.0 { "met" } else { "NOT met" });
}
