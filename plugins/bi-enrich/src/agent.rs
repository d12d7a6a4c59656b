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
        return Device {
            class: looks_like_bot(agent),
            browser: "other",
        };
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

/// `bot` for agents that call themselves a bot, spider or crawler but that
/// woothee does not know; `unknown` otherwise.
fn looks_like_bot(agent: &str) -> &'static str {
    let lower = agent.to_ascii_lowercase();
    if ["bot", "spider", "crawl"].iter().any(|w| lower.contains(w)) {
        "bot"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

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
        check(
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "desktop",
            "Firefox",
        );
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
        check(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "bot",
            "other",
        );
        check("curl/8.5.0", "bot", "other");
        check("ExampleSpider/1.0", "bot", "other");
        check("", "unknown", "other");
        check("something odd", "unknown", "other");
    }
}
