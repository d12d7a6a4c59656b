//! Device class and browser family of a user agent, with the `woothee`
//! parser (a pure-Rust port of the cross-language woothee project, which
//! builds for wasm32-wasip2).
//!
//! woothee's categories are mapped to the BI device classes:
//!
//! | woothee                                   | class     |
//! |-------------------------------------------|-----------|
//! | `pc`                                      | `desktop` |
//! | `smartphone` on an iPad, or on Android without `Mobile` in the agent | `tablet` |
//! | other `smartphone`, `mobilephone`         | `mobile`  |
//! | `crawler`, and `misc` "HTTP Library" (curl, python-requests …) | `bot` |
//! | anything else (`appliance`, `misc`, unknown) | `unknown`, or `bot` when the agent says `bot`, `spider` or `crawl` |
//!
//! Browser families are woothee's names Chrome, Firefox, Safari, Edge and
//! Opera; every other name is `other`.
//!
//! Parsing is the dearest part of an event (woothee runs a dozen regexes,
//! much slower in wasm than natively), and tracking traffic repeats the same
//! few hundred agents over and over, so the stage classifies through an
//! [`AgentCache`].

use std::collections::HashMap;

use woothee::parser::Parser;

/// What a user agent was classified as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`
    pub class: &'static str,
    /// `Chrome`, `Firefox`, `Safari`, `Edge`, `Opera` or `other`
    pub browser: &'static str,
}

/// Classifies a user agent string.
pub fn classify(agent: &str) -> Device {
    let Some(result) = Parser::new().parse(agent) else {
        return Device { class: looks_like_bot(agent), browser: "other" };
    };
    let class = match result.category {
        "pc" => "desktop",
        "smartphone" if result.os == "iPad" => "tablet",
        "smartphone" if result.os == "Android" && !agent.contains("Mobile") => "tablet",
        "smartphone" | "mobilephone" => "mobile",
        "crawler" => "bot",
        "misc" if result.name == "HTTP Library" => "bot",
        _ => looks_like_bot(agent),
    };
    let browser = match result.name {
        "Chrome" => "Chrome",
        "Firefox" => "Firefox",
        "Safari" => "Safari",
        "Edge" => "Edge",
        "Opera" => "Opera",
        _ => "other",
    };
    Device { class, browser }
}

/// A bounded cache of [`classify`]: the same answers, each agent parsed once
/// while it stays in the cache.
///
/// Two generations, a cheap approximation of LRU: a lookup tries
/// `current`, then `old`, and an agent found in `old` moves to `current`.
/// When `current` is full (half the capacity), it becomes `old` and the
/// previous `old` is forgotten, so agents in use survive and one-off agents
/// fall out after two turns. That bounds memory without per-entry
/// bookkeeping: a hit costs one hash and one string compare.
///
/// The maps use std's randomly keyed SipHash: agents come from outside, and
/// a fixed cheap hash would let a client send agents that all collide.
#[derive(Debug, Default)]
pub struct AgentCache {
    /// Most agents the cache holds; 0 turns it off.
    capacity: usize,
    current: HashMap<Box<str>, Device>,
    old: HashMap<Box<str>, Device>,
    hits: u64,
    misses: u64,
}

impl AgentCache {
    /// A cache of at most `capacity` agents; 0 turns caching off (every
    /// agent is parsed).
    pub fn new(capacity: usize) -> AgentCache {
        AgentCache { capacity, ..AgentCache::default() }
    }

    /// Classifies `agent` as [`classify`] does, from the cache when it can.
    pub fn classify(&mut self, agent: &str) -> Device {
        if self.capacity == 0 {
            self.misses += 1;
            return classify(agent);
        }
        if let Some(&device) = self.current.get(agent) {
            self.hits += 1;
            return device;
        }
        // Promoted from `old`, the key moves without a new allocation.
        let (key, device) = match self.old.remove_entry(agent) {
            Some(entry) => {
                self.hits += 1;
                entry
            }
            None => {
                self.misses += 1;
                (Box::from(agent), classify(agent))
            }
        };
        if self.current.len() >= self.generation() {
            // The maps swap rather than move, so `current` reuses the
            // forgotten generation's allocation.
            std::mem::swap(&mut self.current, &mut self.old);
            self.current.clear();
            if self.capacity == 1 {
                // No room for an `old` beside a full `current`.
                self.old.clear();
            }
        }
        self.current.insert(key, device);
        device
    }

    /// How many agents the cache holds now, at most its capacity.
    pub fn len(&self) -> usize {
        self.current.len() + self.old.len()
    }

    /// Whether the cache holds no agent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many lookups were answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// How many lookups parsed the agent (every one when caching is off).
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// The most agents `current` holds before it becomes `old`.
    fn generation(&self) -> usize {
        (self.capacity / 2).max(1)
    }
}

/// `bot` for agents that call themselves a bot, spider or crawler but that
/// woothee does not know; `unknown` otherwise.
fn looks_like_bot(agent: &str) -> &'static str {
    let lower = agent.to_ascii_lowercase();
    if ["bot", "spider", "crawl"].iter().any(|w| lower.contains(w)) { "bot" } else { "unknown" }
}

#[cfg(test)]
mod tests {
    use super::{AgentCache, classify};

    fn check(agent: &str, class: &str, browser: &str) {
        let device = classify(agent);
        assert_eq!((device.class, device.browser), (class, browser), "{agent}");
    }

    #[test]
    fn desktops() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "desktop",
            "Chrome",
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "desktop",
            "Edge",
        );
        check("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "desktop", "Firefox");
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
            "desktop",
            "Safari",
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
            "desktop",
            "Opera",
        );
    }

    #[test]
    fn phones_and_tablets() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
            "mobile",
            "Safari",
        );
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
            "mobile",
            "Chrome",
        );
        check(
            "Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
            "tablet",
            "Safari",
        );
        check(
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "tablet",
            "Chrome",
        );
    }

    #[test]
    fn bots_and_unknowns() {
        check("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot", "other");
        check("curl/8.5.0", "bot", "other");
        check("ExampleSpider/1.0", "bot", "other");
        check("", "unknown", "other");
        check("something odd", "unknown", "other");
    }

    /// Agents of every class, and variants of them, enough to fill and
    /// turn small caches.
    fn agents() -> Vec<String> {
        let mut agents: Vec<String> = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
            "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (iPad; CPU OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
            "Mozilla/5.0 (compatible; Googlebot/2.{v}; +http://www.google.com/bot.html)",
            "curl/8.{v}.0",
            "ExampleSpider/{v}.0",
            "odd agent {v}",
        ]
        .iter()
        .flat_map(|template| (0..8).map(move |v| template.replace("{v}", &v.to_string())))
        .collect();
        agents.push(String::new());
        agents
    }

    #[test]
    fn cached_and_uncached_classification_agree() {
        let agents = agents();
        for capacity in [0, 1, 2, 3, 7, 16, 4096] {
            let mut cache = AgentCache::new(capacity);
            // Twice over, forwards then backwards, so that answers come
            // from `current`, from `old` and from the parser.
            for agent in agents.iter().chain(agents.iter().rev()).chain(&agents) {
                assert_eq!(cache.classify(agent), classify(agent), "capacity {capacity}: {agent}");
            }
        }
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let agents = agents();
        for capacity in [1, 2, 3, 10, 33] {
            let mut cache = AgentCache::new(capacity);
            for (i, agent) in agents.iter().enumerate() {
                cache.classify(agent);
                // Some agents again, promoted from `old`.
                cache.classify(&agents[i / 2]);
                assert!(cache.len() <= capacity, "capacity {capacity}: {} agents", cache.len());
            }
            assert!(cache.len() >= capacity / 2, "capacity {capacity}: {} agents", cache.len());
        }
    }

    #[test]
    fn repeated_agents_are_hits() {
        let agents = agents();
        let mut cache = AgentCache::new(4096);
        for agent in agents.iter().chain(&agents) {
            cache.classify(agent);
        }
        assert_eq!((cache.hits(), cache.misses()), (agents.len() as u64, agents.len() as u64));
        assert_eq!(cache.len(), agents.len());

        // A recently used agent survives a turn; one left alone does not.
        let mut cache = AgentCache::new(4);
        for agent in ["a", "b", "c", "a", "d", "e"] {
            cache.classify(agent);
        }
        let hits = cache.hits();
        cache.classify("a");
        assert_eq!(cache.hits(), hits + 1, "a was kept");
        cache.classify("b");
        assert_eq!(cache.hits(), hits + 1, "b was forgotten");
    }

    #[test]
    fn capacity_zero_parses_every_time() {
        let mut cache = AgentCache::new(0);
        for _ in 0..3 {
            let device = cache.classify("curl/8.5.0");
            assert_eq!((device.class, device.browser), ("bot", "other"));
        }
        assert_eq!((cache.hits(), cache.misses()), (0, 3));
        assert!(cache.is_empty());
    }
}
