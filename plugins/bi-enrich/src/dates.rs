//! Date dimensions from an RFC 3339 timestamp.
//!
//! The timestamp is parsed into whole seconds since the Unix epoch (UTC); a
//! numeric offset (`+02:00`) is applied, so every dimension is in UTC. The
//! calendar (proleptic Gregorian) and the ISO 8601 week are the `time`
//! crate's. The text is read here rather than by `time`'s RFC 3339 parser,
//! for error messages that say where the text is wrong, and because its
//! dimensions are coarser than what that parser checks (a leap second, any
//! fraction of a second are accepted).

use time::{Date, Month};

/// The date dimensions of one timestamp, all in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateDims {
    /// `2026-11-26`
    pub day: String,
    /// `2026-W48` (ISO 8601 week-numbering year and week)
    pub iso_week: String,
    /// 0..=23
    pub hour: u32,
    /// `Monday` .. `Sunday`
    pub weekday: &'static str,
}

const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Parses an RFC 3339 timestamp (`2026-11-26T10:15:00Z`,
/// `2026-11-26T10:15:00.123+01:00`) and returns its UTC date dimensions.
/// The error says what is wrong with the text.
pub fn dims(ts: &str) -> Result<DateDims, String> {
    let seconds = parse_rfc3339(ts)?;
    Ok(dims_from_unix(seconds))
}

/// The Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
/// 400 Gregorian years: dates, weekdays and ISO weeks repeat after them
/// (146 097 days are 20 871 weeks).
const ERA_DAYS: i64 = 146_097;
/// 1900-01-01, in days since 1970-01-01: days outside the 400 years from it
/// are moved into them, since `time`'s dates end with the year 9999 and an
/// offset can carry a timestamp to 10000-01-01.
const ERA_START: i64 = -25_567;

/// The date dimensions of a Unix time in seconds.
pub fn dims_from_unix(seconds: i64) -> DateDims {
    let days = seconds.div_euclid(86_400);
    let hour = (seconds.rem_euclid(86_400) / 3600) as u32;
    let (date, years) = date_of(days);
    let (y, m, d) = date.to_calendar_date();
    let (week_year, week, weekday) = date.to_iso_week_date();
    DateDims {
        day: day_text(i64::from(y) + years, u32::from(u8::from(m)), u32::from(d)),
        iso_week: week_text(i64::from(week_year) + years, u32::from(week)),
        hour,
        weekday: WEEKDAYS[usize::from(weekday.number_days_from_monday())],
    }
}

/// The date of a day count since 1970-01-01: a date within 400 years of
/// 1900-01-01, and the years to add to its year and ISO week-numbering year.
fn date_of(days: i64) -> (Date, i64) {
    let eras = (days - ERA_START).div_euclid(ERA_DAYS);
    let julian_day = days - eras * ERA_DAYS + UNIX_EPOCH_JULIAN_DAY;
    let date = i32::try_from(julian_day).ok().and_then(|day| Date::from_julian_day(day).ok());
    (date.expect("a day between 1900 and 2300 is a valid date"), eras * 400)
}

/// `2026-11-26`: `format!("{y:04}-{m:02}-{d:02}")`, written by hand for
/// four-digit years: the two `format!` calls of an event cost about as much
/// as the rest of its date work.
fn day_text(y: i64, m: u32, d: u32) -> String {
    let Ok(year @ 0..=9999) = u32::try_from(y) else {
        return format!("{y:04}-{m:02}-{d:02}");
    };
    let mut text = String::with_capacity(10);
    push_digits(&mut text, year, 4);
    text.push('-');
    push_digits(&mut text, m, 2);
    text.push('-');
    push_digits(&mut text, d, 2);
    text
}

/// `2026-W48`: `format!("{y:04}-W{week:02}")`, as [`day_text`].
fn week_text(y: i64, week: u32) -> String {
    let Ok(year @ 0..=9999) = u32::try_from(y) else {
        return format!("{y:04}-W{week:02}");
    };
    let mut text = String::with_capacity(8);
    push_digits(&mut text, year, 4);
    text.push_str("-W");
    push_digits(&mut text, week, 2);
    text
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(text: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        text.push(char::from(b'0' + digit as u8));
    }
}

/// Seconds since 1970-01-01T00:00:00Z of an RFC 3339 date-time.
pub fn parse_rfc3339(ts: &str) -> Result<i64, String> {
    let b = ts.as_bytes();
    // YYYY-MM-DDTHH:MM:SS is 19 bytes; then fraction, then Z or ±HH:MM.
    if b.len() < 20 {
        return Err("too short for an RFC 3339 date-time (e.g. 2026-11-26T10:15:00Z)".into());
    }
    let sep = |i: usize, expected: &[u8]| -> Result<(), String> {
        if expected.contains(&b[i]) { Ok(()) } else { Err(format!("expected {:?} at position {i}", expected.iter().map(|&c| c as char).collect::<String>())) }
    };
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    sep(13, b":")?;
    sep(16, b":")?;
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    let Ok(month_name) = Month::try_from(month as u8) else {
        return Err(format!("month {month} is out of range"));
    };
    // Four digits: a year `time` can represent.
    let date = Date::from_calendar_date(year as i32, month_name, day as u8);
    let Ok(date) = date else {
        return Err(format!("day {day} is out of range for {year:04}-{month:02}"));
    };
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!("time {hour:02}:{minute:02}:{second:02} is out of range"));
    }
    // Optional fraction of a second: ignored, dimensions are coarser.
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err("empty fraction of a second".into());
        }
    }
    let offset_seconds = match &b[i..] {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(b, i + 1, 2)?;
            let minutes = digits(b, i + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return Err("time zone offset is out of range".into());
            }
            let offset = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -offset } else { offset }
        }
        [] => return Err("no time zone (add Z for UTC)".into()),
        _ => return Err(format!("unexpected text {:?} after the time", &ts[i..])),
    };
    let days = i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
    // A leap second (:60) counts as the next second.
    let local = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Ok(local - offset_seconds)
}

fn digits(b: &[u8], start: usize, len: usize) -> Result<u32, String> {
    let mut n = 0u32;
    for i in start..start + len {
        match b.get(i) {
            Some(c) if c.is_ascii_digit() => n = n * 10 + u32::from(c - b'0'),
            _ => return Err(format!("expected a digit at position {i}")),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The hand-written calendar this module used before `time`, kept as a
    // second opinion: Howard Hinnant's `days_from_civil` and
    // `civil_from_days`, and the ISO week as the week of the Thursday of
    // the same Monday-to-Sunday week.

    /// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant).
    fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400; // [0, 399]
        let m = i64::from(month);
        let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
        let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
        era * 146_097 + doe - 719_468
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01 (Hinnant).
    fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097; // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
        let mp = (5 * doy + 2) / 153; // [0, 11]
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    /// ISO weekday of a day count: 1 = Monday .. 7 = Sunday (1970-01-01 was a
    /// Thursday).
    fn iso_weekday(days: i64) -> i64 {
        (days + 3).rem_euclid(7) + 1
    }

    /// ISO 8601 (week-numbering year, week) of a day count: the week belongs to
    /// the year of its Thursday, and week 1 is the week with the year's first
    /// Thursday.
    fn iso_week(days: i64) -> (i64, i64) {
        let thursday = days - iso_weekday(days) + 4;
        let (year, _, _) = civil_from_days(thursday);
        let ordinal = thursday - days_from_civil(year, 1, 1); // 0-based
        (year, ordinal / 7 + 1)
    }

    #[test]
    fn time_agrees_with_the_hand_written_calendar() {
        // Every day from 1600 to 2600, then every 97th from year -2000 to
        // 10 000 and beyond, where days are moved by whole 400 years.
        let every = -135_140..230_000;
        let sampled = (-1_450_000..3_000_000).step_by(97);
        for days in every.chain(sampled) {
            let (y, m, d) = civil_from_days(days);
            let (week_year, week) = iso_week(days);
            let weekday = WEEKDAYS[(iso_weekday(days) - 1) as usize];
            let dims = dims_from_unix(days * 86_400 + 3600 * (days.rem_euclid(24)));
            assert_eq!(dims.day, format!("{y:04}-{m:02}-{d:02}"), "day {days}");
            assert_eq!(dims.iso_week, format!("{week_year:04}-W{week:02}"), "day {days}");
            assert_eq!(dims.weekday, weekday, "day {days}");
            assert_eq!(i64::from(dims.hour), days.rem_euclid(24), "day {days}");
            if (0..=9999).contains(&y) {
                let ts = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
                assert_eq!(parse_rfc3339(&ts), Ok(days_from_civil(y, m, d) * 86_400), "{ts}");
            }
        }
    }

    fn check(ts: &str, day: &str, week: &str, hour: u32, weekday: &str) {
        let d = dims(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert_eq!((d.day.as_str(), d.iso_week.as_str(), d.hour, d.weekday), (day, week, hour, weekday), "{ts}");
    }

    #[test]
    fn known_dates() {
        check("2026-11-26T10:15:00Z", "2026-11-26", "2026-W48", 10, "Thursday");
        check("2021-01-03T00:00:00Z", "2021-01-03", "2020-W53", 0, "Sunday");
        check("2024-12-30T23:59:59Z", "2024-12-30", "2025-W01", 23, "Monday");
        check("1970-01-01T00:00:00Z", "1970-01-01", "1970-W01", 0, "Thursday");
        check("2000-02-29T12:00:00Z", "2000-02-29", "2000-W09", 12, "Tuesday");
        check("2008-12-29T05:00:00Z", "2008-12-29", "2009-W01", 5, "Monday");
        check("2010-01-03T05:00:00Z", "2010-01-03", "2009-W53", 5, "Sunday");
        check("2023-01-01T05:00:00Z", "2023-01-01", "2022-W52", 5, "Sunday");
        check("2026-01-01T05:00:00Z", "2026-01-01", "2026-W01", 5, "Thursday");
        check("1969-12-31T23:00:00Z", "1969-12-31", "1970-W01", 23, "Wednesday");
    }

    #[test]
    fn fractions_and_offsets_are_converted_to_utc() {
        check("2026-11-26T10:15:00.123456Z", "2026-11-26", "2026-W48", 10, "Thursday");
        // 00:30 in Berlin (+01:00) is 23:30 UTC the day before.
        check("2026-11-27T00:30:00+01:00", "2026-11-26", "2026-W48", 23, "Thursday");
        check("2026-11-26T22:30:00-02:00", "2026-11-27", "2026-W48", 0, "Friday");
        check("2026-11-26t10:15:00z", "2026-11-26", "2026-W48", 10, "Thursday");
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(parse_rfc3339("2026-11-26T10:15:00Z"), Ok(1_795_688_100));
    }

    #[test]
    fn texts_are_what_format_writes() {
        for days in (-800_000..3_000_000).step_by(89) {
            let (y, m, d) = civil_from_days(days);
            let (week_year, week) = iso_week(days);
            let dims = dims_from_unix(days * 86_400);
            assert_eq!(dims.day, format!("{y:04}-{m:02}-{d:02}"));
            assert_eq!(dims.iso_week, format!("{week_year:04}-W{week:02}"));
        }
        // An offset can take a four-digit year out of four digits.
        check("0000-01-01T00:30:00+01:00", "-001-12-31", "-001-W52", 23, "Friday");
        check("9999-12-31T23:30:00-01:00", "10000-01-01", "9999-W52", 0, "Saturday");
    }

    #[test]
    fn bad_timestamps() {
        let err = |ts: &str| parse_rfc3339(ts).unwrap_err();
        assert_eq!(err("2026-11-26"), "too short for an RFC 3339 date-time (e.g. 2026-11-26T10:15:00Z)");
        assert_eq!(err("2026-13-01T00:00:00Z"), "month 13 is out of range");
        assert_eq!(err("2025-02-29T00:00:00Z"), "day 29 is out of range for 2025-02");
        assert_eq!(err("2026-11-26T24:00:00Z"), "time 24:00:00 is out of range");
        assert_eq!(err("2026-11-26T10:15:00"), "too short for an RFC 3339 date-time (e.g. 2026-11-26T10:15:00Z)");
        assert_eq!(err("2026-11-26T10:15:00.Z"), "empty fraction of a second");
        assert_eq!(err("2026-11-26T10:15:00.5"), "no time zone (add Z for UTC)");
        assert_eq!(err("2026-11-26T10:15:00+0100"), "unexpected text \"+0100\" after the time");
        assert_eq!(err("2026/11/26T10:15:00Z"), "expected \"-\" at position 4");
        assert_eq!(err("2026-1x-26T10:15:00Z"), "expected a digit at position 6");
    }
}
