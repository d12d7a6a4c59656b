// traffic-js: classifies a tracking hit's traffic channel.
//
// From the page URL's UTM parameters and click ids, and from the referrer,
// this stage adds to each hit (a JSON object):
//
// - channel: search, social, email, paid, referral, internal, direct, or
//   other (campaign-tagged traffic whose medium and source mean none of these)
// - source: google, facebook, newsletter, blog.example.org, (direct)...
// - medium: organic, social, email, cpc, referral, internal, (none)...
// - campaign: when the URL (or the hit) names one
//
// The rules, first match wins: UTM parameters (in the URL, else fields of the
// hit); ad click ids (gclid, msclkid...); no referrer is direct; a referrer on
// one of the site's own hosts is internal; a search engine, a social network
// or a webmail host by its domain; any other referrer is a referral.
//
// The Python stage in ../traffic-py does the same, rule for rule; both are
// tested on the same cases (../traffic-cases.json).
import { Invalid, exportStage } from 'weir-stage';

// Domain -> the source name a hit from it gets. A domain matches itself and
// its subdomains (www.bing.com, m.facebook.com).
const SEARCH = {
  'bing.com': 'bing',
  'duckduckgo.com': 'duckduckgo',
  'search.yahoo.com': 'yahoo',
  'yahoo.com': 'yahoo',
  'ecosia.org': 'ecosia',
  'baidu.com': 'baidu',
  'yandex.ru': 'yandex',
  'yandex.com': 'yandex',
  'search.brave.com': 'brave',
  'startpage.com': 'startpage',
  'qwant.com': 'qwant',
  'kagi.com': 'kagi',
};
const SOCIAL = {
  'facebook.com': 'facebook',
  'fb.com': 'facebook',
  'instagram.com': 'instagram',
  't.co': 'x',
  'twitter.com': 'x',
  'x.com': 'x',
  'linkedin.com': 'linkedin',
  'lnkd.in': 'linkedin',
  'reddit.com': 'reddit',
  'youtube.com': 'youtube',
  'tiktok.com': 'tiktok',
  'pinterest.com': 'pinterest',
  'threads.net': 'threads',
  'bsky.app': 'bluesky',
  'mastodon.social': 'mastodon',
};
const EMAIL = {
  'mail.google.com': 'gmail',
  'outlook.live.com': 'outlook',
  'outlook.office.com': 'outlook',
  'outlook.office365.com': 'outlook',
  'mail.yahoo.com': 'yahoo-mail',
  'mail.proton.me': 'proton-mail',
};
// Android apps send `android-app://<package>` as the referrer.
const APPS = {
  'com.google.android.gm': ['email', 'gmail', 'email'],
  'com.google.android.googlequicksearchbox': ['search', 'google', 'organic'],
  'com.facebook.katana': ['social', 'facebook', 'social'],
  'com.instagram.android': ['social', 'instagram', 'social'],
  'com.twitter.android': ['social', 'x', 'social'],
  'com.linkedin.android': ['social', 'linkedin', 'social'],
  'com.reddit.frontpage': ['social', 'reddit', 'social'],
};
// Google has a domain per country: google.com, google.de, google.co.uk...
const GOOGLE_TLDS = new Set(['com', 'co', 'com.au', 'com.br', 'co.uk', 'co.jp', 'co.in']);

const PAID_MEDIA = new Set(['cpc', 'ppc', 'cpm', 'cpv', 'cpa', 'paid', 'paidsearch', 'paid_search', 'paid-search',
  'paidsocial', 'paid_social', 'paid-social', 'display', 'banner', 'retargeting', 'ads']);
const EMAIL_MEDIA = new Set(['email', 'e-mail', 'e_mail', 'mail', 'newsletter']);
const SOCIAL_MEDIA = new Set(['social', 'social-network', 'social_network', 'social-media', 'social_media', 'sm']);
const EMAIL_SOURCES = new Set(['newsletter', 'email', 'mailchimp', 'sendgrid', 'klaviyo', 'brevo']);
const REFERRAL_MEDIA = new Set(['referral', 'link', 'affiliate', 'partner']);
// Ad click ids: the platform adds them to the landing URL.
const CLICK_IDS = [['gclid', 'google'], ['gbraid', 'google'], ['wbraid', 'google'], ['dclid', 'google'],
  ['msclkid', 'bing'], ['ttclid', 'tiktok'], ['li_fat_id', 'linkedin']];
const KEYS = ['internal_hosts', 'search_domains', 'social_domains', 'email_domains', 'url_field', 'referrer_field', 'into'];

function domains(config, key) {
  const value = config[key] ?? [];
  if (!Array.isArray(value) || !value.every((d) => typeof d === 'string' && d)) {
    throw new Invalid(`config.${key}: expected a list of host names, like ["example.com"], got ${JSON.stringify(value)}`);
  }
  return value.map((d) => d.toLowerCase().replace(/^www\./, ''));
}

/** The entry of `table` that `host` is, or is a subdomain of. */
function hostIn(host, table) {
  while (host) {
    if (Object.hasOwn(table, host)) return host;
    const dot = host.indexOf('.');
    if (dot < 0) return undefined;
    host = host.slice(dot + 1);
  }
  return undefined;
}

function isGoogle(host) {
  const labels = host.split('.');
  const i = labels.indexOf('google');
  if (i < 0) return false;
  const rest = labels.slice(i + 1).join('.');
  return GOOGLE_TLDS.has(rest) || /^[a-z]{2}$/.test(rest);
}

function textField(hit, name) {
  const value = hit[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') {
    throw new Invalid(`field "${name}" must be a string, got ${typeof value} ${JSON.stringify(value)}`);
  }
  return value;
}

function parse(url) {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

function query(url) {
  const params = new Map();
  const parsed = url ? parse(url) : undefined;
  if (!parsed) return params;
  for (const [k, v] of parsed.searchParams) if (v && !params.has(k)) params.set(k, v);
  return params;
}

export default class Traffic {
  init(config) {
    const unknown = Object.keys(config).filter((k) => !KEYS.includes(k)).sort();
    if (unknown.length) throw new Invalid(`config.${unknown[0]}: unknown key; the keys are ${[...KEYS].sort().join(', ')}`);
    this.internal = Object.fromEntries(domains(config, 'internal_hosts').map((d) => [d, d]));
    this.search = { ...SEARCH, ...Object.fromEntries(domains(config, 'search_domains').map((d) => [d, d])) };
    this.social = { ...SOCIAL, ...Object.fromEntries(domains(config, 'social_domains').map((d) => [d, d])) };
    this.email = { ...EMAIL, ...Object.fromEntries(domains(config, 'email_domains').map((d) => [d, d])) };
    for (const key of ['url_field', 'referrer_field', 'into']) {
      if (config[key] !== undefined && typeof config[key] !== 'string') {
        throw new Invalid(`config.${key}: expected a string, got ${JSON.stringify(config[key])}`);
      }
    }
    this.urlField = config.url_field || 'url';
    this.referrerField = config.referrer_field || 'referrer';
    this.into = config.into || '';
  }

  process(event) {
    const hit = event.json();
    if (hit === null || typeof hit !== 'object' || Array.isArray(hit)) {
      const type = Array.isArray(hit) ? 'list' : hit === null ? 'null' : typeof hit;
      throw new Invalid(`payload is a JSON ${type}, not an object: a tracking hit is an object with a url and a referrer`);
    }
    const traffic = this.classify(textField(hit, this.urlField), textField(hit, this.referrerField), hit);
    if (this.into) hit[this.into] = traffic;
    else Object.assign(hit, traffic);
    return event.withJson(hit);
  }

  classify(url, referrer, hit) {
    const params = query(url);
    const utm = {};
    for (const name of ['source', 'medium', 'campaign']) {
      const value = params.get(`utm_${name}`) || textField(hit, `utm_${name}`);
      if (value) utm[name] = name === 'campaign' ? value.trim() : value.trim().toLowerCase();
    }
    if (utm.source || utm.medium) return this.tagged(utm, referrer);
    for (const [param, source] of CLICK_IDS) {
      if (params.has(param)) return { channel: 'paid', source, medium: 'cpc' };
    }
    // Facebook adds fbclid to every outbound link, paid or not.
    if (params.has('fbclid')) return { channel: 'social', source: 'facebook', medium: 'social' };
    return this.referred(referrer);
  }

  tagged(utm, referrer) {
    const medium = utm.medium ?? '';
    const source = utm.source || this.referred(referrer).source;
    let channel;
    if (PAID_MEDIA.has(medium) || medium.startsWith('paid')) channel = 'paid';
    else if (EMAIL_MEDIA.has(medium)) channel = 'email';
    else if (SOCIAL_MEDIA.has(medium)) channel = 'social';
    else if (medium === 'organic') channel = 'search';
    else if (REFERRAL_MEDIA.has(medium)) channel = 'referral';
    // No medium, or one of its own: go by the source's name.
    else channel = this.channelOfName(source);
    const result = { channel, source, medium: medium || '(not set)' };
    if (utm.campaign) result.campaign = utm.campaign;
    return result;
  }

  channelOfName(source) {
    const named = (table) => Object.values(table).includes(source) || hostIn(source, table) !== undefined;
    if (EMAIL_SOURCES.has(source) || named(this.email)) return 'email';
    if (source === 'google' || isGoogle(source) || named(this.search)) return 'search';
    if (named(this.social)) return 'social';
    return 'other';
  }

  referred(referrer) {
    if (!referrer) return { channel: 'direct', source: '(direct)', medium: '(none)' };
    const trimmed = referrer.trim();
    const parsed = parse(trimmed);
    if (parsed && parsed.protocol === 'android-app:') {
      // WHATWG URL keeps a non-special scheme's host as it is written.
      const app = trimmed.slice('android-app://'.length).split(/[/?#]/)[0].toLowerCase();
      const known = APPS[app];
      if (known) return { channel: known[0], source: known[1], medium: known[2] };
      return { channel: 'referral', source: app || trimmed, medium: 'referral' };
    }
    const host = parsed ? parsed.hostname.toLowerCase().replace(/^www\./, '') : '';
    if (!host) return { channel: 'referral', source: trimmed.slice(0, 100), medium: 'referral' };
    if (hostIn(host, this.internal)) return { channel: 'internal', source: host, medium: 'internal' };
    const mail = hostIn(host, this.email);
    if (mail) return { channel: 'email', source: this.email[mail], medium: 'email' };
    if (isGoogle(host)) return { channel: 'search', source: 'google', medium: 'organic' };
    for (const [channel, table, medium] of [['search', this.search, 'organic'], ['social', this.social, 'social']]) {
      const match = hostIn(host, table);
      if (match) return { channel, source: table[match], medium };
    }
    return { channel: 'referral', source: host, medium: 'referral' };
  }
}

export const { init, process } = exportStage(Traffic);
