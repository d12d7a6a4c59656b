"""traffic-py: classifies a tracking hit's traffic channel.

From the page URL's UTM parameters and click ids, and from the referrer,
this stage adds to each hit (a JSON object):

- ``channel``: search, social, email, paid, referral, internal, direct, or
  other (campaign-tagged traffic whose medium and source mean none of these)
- ``source``: google, facebook, newsletter, blog.example.org, (direct)...
- ``medium``: organic, social, email, cpc, referral, internal, (none)...
- ``campaign``: when the URL (or the hit) names one

The rules, first match wins: UTM parameters (in the URL, else fields of the
hit); ad click ids (gclid, msclkid...); no referrer is direct; a referrer on
one of the site's own hosts is internal; a search engine, a social network
or a webmail host by its domain; any other referrer is a referral.

Config (all optional), in the pipeline TOML::

    config = { internal_hosts = ["shop.example.com"], search_domains = ["kagi.com"],
               social_domains = ["news.ycombinator.com"], email_domains = ["mail.proton.me"],
               url_field = "url", referrer_field = "referrer", into = "" }

The JavaScript stage in ../traffic-js does the same, rule for rule; both
are tested on the same cases.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import weir_stage
from weir_stage import Event, Invalid

# Domain -> the source name a hit from it gets. A domain matches itself and
# its subdomains (www.bing.com, m.facebook.com).
SEARCH = {
    "bing.com": "bing",
    "duckduckgo.com": "duckduckgo",
    "search.yahoo.com": "yahoo",
    "yahoo.com": "yahoo",
    "ecosia.org": "ecosia",
    "baidu.com": "baidu",
    "yandex.ru": "yandex",
    "yandex.com": "yandex",
    "search.brave.com": "brave",
    "startpage.com": "startpage",
    "qwant.com": "qwant",
    "kagi.com": "kagi",
}
SOCIAL = {
    "facebook.com": "facebook",
    "fb.com": "facebook",
    "instagram.com": "instagram",
    "t.co": "x",
    "twitter.com": "x",
    "x.com": "x",
    "linkedin.com": "linkedin",
    "lnkd.in": "linkedin",
    "reddit.com": "reddit",
    "youtube.com": "youtube",
    "tiktok.com": "tiktok",
    "pinterest.com": "pinterest",
    "threads.net": "threads",
    "bsky.app": "bluesky",
    "mastodon.social": "mastodon",
}
EMAIL = {
    "mail.google.com": "gmail",
    "outlook.live.com": "outlook",
    "outlook.office.com": "outlook",
    "outlook.office365.com": "outlook",
    "mail.yahoo.com": "yahoo-mail",
    "mail.proton.me": "proton-mail",
}
# Android apps send `android-app://<package>` as the referrer.
APPS = {
    "com.google.android.gm": ("email", "gmail", "email"),
    "com.google.android.googlequicksearchbox": ("search", "google", "organic"),
    "com.facebook.katana": ("social", "facebook", "social"),
    "com.instagram.android": ("social", "instagram", "social"),
    "com.twitter.android": ("social", "x", "social"),
    "com.linkedin.android": ("social", "linkedin", "social"),
    "com.reddit.frontpage": ("social", "reddit", "social"),
}
# Google has a domain per country: google.com, google.de, google.co.uk...
GOOGLE_TLDS = ("com", "co", "com.au", "com.br", "co.uk", "co.jp", "co.in")

PAID_MEDIA = {"cpc", "ppc", "cpm", "cpv", "cpa", "paid", "paidsearch", "paid_search", "paid-search",
              "paidsocial", "paid_social", "paid-social", "display", "banner", "retargeting", "ads"}
EMAIL_MEDIA = {"email", "e-mail", "e_mail", "mail", "newsletter"}
SOCIAL_MEDIA = {"social", "social-network", "social_network", "social-media", "social_media", "sm"}
EMAIL_SOURCES = {"newsletter", "email", "mailchimp", "sendgrid", "klaviyo", "brevo"}
REFERRAL_MEDIA = {"referral", "link", "affiliate", "partner"}
# Ad click ids: the platform adds them to the landing URL.
CLICK_IDS = (("gclid", "google"), ("gbraid", "google"), ("wbraid", "google"), ("dclid", "google"),
             ("msclkid", "bing"), ("ttclid", "tiktok"), ("li_fat_id", "linkedin"))


def _domains(config: dict, key: str) -> list[str]:
    value = config.get(key, [])
    if not isinstance(value, list) or not all(isinstance(d, str) and d for d in value):
        raise Invalid(f'config.{key}: expected a list of host names, like ["example.com"], got {value!r}')
    return [d.lower().removeprefix("www.") for d in value]


def _host_in(host: str, domains) -> str | None:
    """The entry of ``domains`` that ``host`` is, or is a subdomain of."""
    while host:
        if host in domains:
            return host
        dot = host.find(".")
        if dot < 0:
            return None
        host = host[dot + 1:]
    return None


def _is_google(host: str) -> bool:
    labels = host.split(".")
    for i, label in enumerate(labels):
        if label == "google":
            rest = ".".join(labels[i + 1:])
            return rest in GOOGLE_TLDS or (len(rest) == 2 and rest.isalpha())
    return False


def _text_field(hit: dict, name: str) -> str | None:
    value = hit.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(f'field "{name}" must be a string, got {type(value).__name__} {value!r}')
    return value


def _query(url: str | None) -> dict[str, str]:
    if not url:
        return {}
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    return {k: v[0] for k, v in parse_qs(query).items() if v and v[0]}


class Traffic:
    def init(self, config: dict) -> None:
        known = {"internal_hosts", "search_domains", "social_domains", "email_domains",
                 "url_field", "referrer_field", "into"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise Invalid(f"config.{unknown[0]}: unknown key; the keys are {', '.join(sorted(known))}")
        self.internal = set(_domains(config, "internal_hosts"))
        self.search = dict(SEARCH)
        self.search.update({d: d for d in _domains(config, "search_domains")})
        self.social = dict(SOCIAL)
        self.social.update({d: d for d in _domains(config, "social_domains")})
        self.email = dict(EMAIL)
        self.email.update({d: d for d in _domains(config, "email_domains")})
        for key in ("url_field", "referrer_field", "into"):
            if not isinstance(config.get(key, ""), str):
                raise Invalid(f"config.{key}: expected a string, got {config[key]!r}")
        self.url_field = config.get("url_field") or "url"
        self.referrer_field = config.get("referrer_field") or "referrer"
        self.into = config.get("into") or ""

    def process(self, event: Event) -> Event:
        hit = event.json()
        if not isinstance(hit, dict):
            raise Invalid(f"payload is a JSON {type(hit).__name__}, not an object: a tracking hit is an object with a url and a referrer")
        traffic = self.classify(_text_field(hit, self.url_field), _text_field(hit, self.referrer_field), hit)
        if self.into:
            hit[self.into] = traffic
        else:
            hit.update(traffic)
        return event.with_json(hit)

    def classify(self, url: str | None, referrer: str | None, hit: dict) -> dict:
        params = _query(url)
        utm = {}
        for name in ("source", "medium", "campaign"):
            value = params.get(f"utm_{name}") or _text_field(hit, f"utm_{name}")
            if value:
                utm[name] = value.strip().lower() if name != "campaign" else value.strip()
        if utm.get("source") or utm.get("medium"):
            return self._tagged(utm, referrer)
        for param, source in CLICK_IDS:
            if param in params:
                return {"channel": "paid", "source": source, "medium": "cpc"}
        if "fbclid" in params:
            # Facebook adds fbclid to every outbound link, paid or not.
            return {"channel": "social", "source": "facebook", "medium": "social"}
        return self._referred(referrer)

    def _tagged(self, utm: dict, referrer: str | None) -> dict:
        medium = utm.get("medium", "")
        source = utm.get("source") or self._referred(referrer)["source"]
        if medium in PAID_MEDIA or medium.startswith("paid"):
            channel = "paid"
        elif medium in EMAIL_MEDIA:
            channel = "email"
        elif medium in SOCIAL_MEDIA:
            channel = "social"
        elif medium == "organic":
            channel = "search"
        elif medium in REFERRAL_MEDIA:
            channel = "referral"
        else:
            # No medium, or one of its own: go by the source's name.
            channel = self._channel_of_name(source)
        result = {"channel": channel, "source": source, "medium": medium or "(not set)"}
        if "campaign" in utm:
            result["campaign"] = utm["campaign"]
        return result

    def _channel_of_name(self, source: str) -> str:
        if source in EMAIL_SOURCES or source in self.email.values() or _host_in(source, self.email):
            return "email"
        if source == "google" or _is_google(source) or source in self.search.values() or _host_in(source, self.search):
            return "search"
        if source in self.social.values() or _host_in(source, self.social):
            return "social"
        return "other"

    def _referred(self, referrer: str | None) -> dict:
        if not referrer:
            return {"channel": "direct", "source": "(direct)", "medium": "(none)"}
        try:
            parts = urlsplit(referrer.strip())
        except ValueError:
            parts = None
        if parts is not None and parts.scheme == "android-app":
            app = APPS.get((parts.hostname or "").lower())
            if app:
                return {"channel": app[0], "source": app[1], "medium": app[2]}
            return {"channel": "referral", "source": parts.hostname or referrer, "medium": "referral"}
        host = (parts.hostname or "").lower().removeprefix("www.") if parts else ""
        if not host:
            return {"channel": "referral", "source": referrer.strip()[:100], "medium": "referral"}
        if _host_in(host, self.internal):
            return {"channel": "internal", "source": host, "medium": "internal"}
        match = _host_in(host, self.email)
        if match:
            return {"channel": "email", "source": self.email[match], "medium": "email"}
        if _is_google(host):
            return {"channel": "search", "source": "google", "medium": "organic"}
        for channel, table, medium in (("search", self.search, "organic"), ("social", self.social, "social")):
            match = _host_in(host, table)
            if match:
                return {"channel": channel, "source": table[match], "medium": medium}
        return {"channel": "referral", "source": host, "medium": "referral"}


WitWorld = weir_stage.export(Traffic)
