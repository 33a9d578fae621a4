//! Quota periods as time (SPEC §11): the window a moment falls in, in UTC.
//! Days start at 00:00 UTC, weeks on Monday (ISO 8601), months on the 1st;
//! a duration period is a fixed window aligned to the Unix epoch (`6h`:
//! 00:00, 06:00, 12:00, 18:00 UTC).

use time::{Date, Month, OffsetDateTime};

use crate::config::Period;

const DAY: u64 = 86_400;

/// A period's window: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// Seconds from `now` until the window ends (at least 1).
    pub fn secs_left(&self, now: u64) -> u64 {
        self.end.saturating_sub(now).max(1)
    }
}

/// The window of `period` that `now` (Unix seconds) falls in.
pub fn window(period: Period, now: u64) -> Window {
    match period {
        Period::Day => aligned(now, DAY),
        Period::Every(secs) => aligned(now, secs.max(1)),
        Period::Week => {
            let days = now / DAY;
            // 1970-01-01 was a Thursday: three days after a Monday.
            // (Before the first Monday, 1970-01-05, the window starts at 0.)
            let since_monday = (days + 3) % 7;
            Window {
                start: days.saturating_sub(since_monday) * DAY,
                end: (days + 7 - since_monday) * DAY,
            }
        }
        Period::Month => month(now).unwrap_or_else(|| aligned(now, DAY)),
    }
}

fn aligned(now: u64, len: u64) -> Window {
    let start = now - now % len;
    Window {
        start,
        end: start.saturating_add(len),
    }
}

/// The calendar month `now` falls in; `None` only for instants `time`
/// cannot represent (past the year 9999).
fn month(now: u64) -> Option<Window> {
    let date = OffsetDateTime::from_unix_timestamp(i64::try_from(now).ok()?)
        .ok()?
        .date();
    let first = Date::from_calendar_date(date.year(), date.month(), 1).ok()?;
    let next = match date.month() {
        Month::December => Date::from_calendar_date(date.year() + 1, Month::January, 1),
        m => Date::from_calendar_date(date.year(), m.next(), 1),
    }
    .ok()?;
    let unix = |d: Date| u64::try_from(d.midnight().assume_utc().unix_timestamp()).ok();
    Some(Window {
        start: unix(first)?,
        end: unix(next)?,
    })
}

pub use crate::clock::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time, read by `time` itself.
    fn at(y: i32, m: u8, d: u8, hh: u8, mm: u8, ss: u8) -> u64 {
        let month = Month::try_from(m).expect("month");
        let date = Date::from_calendar_date(y, month, d).expect("date");
        let t = date
            .with_hms(hh, mm, ss)
            .expect("time")
            .assume_utc()
            .unix_timestamp();
        u64::try_from(t).expect("after 1970")
    }

    fn shown(w: Window) -> (String, String) {
        (rfc3339(w.start), rfc3339(w.end))
    }

    fn expect(w: Window, start: &str, end: &str) {
        assert_eq!(shown(w), (start.to_owned(), end.to_owned()));
    }

    #[test]
    fn a_day_runs_from_midnight_to_midnight_utc() {
        let w = window(Period::Day, at(2026, 11, 29, 21, 49, 38));
        expect(w, "2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z");
        // The last second of a day is in it; the next one is not.
        let last = at(2026, 11, 29, 23, 59, 59);
        assert_eq!(window(Period::Day, last), w);
        assert_eq!(window(Period::Day, last + 1).start, w.end);
        assert_eq!(w.secs_left(last), 1);
        assert_eq!(w.secs_left(w.start), 86_400);
    }

    #[test]
    fn months_end_on_their_own_last_day_leap_years_included() {
        let cases = [
            // 31-, 30- and 28-day months.
            (
                (2026, 1, 31, 23, 59, 59),
                "2026-01-01T00:00:00Z",
                "2026-02-01T00:00:00Z",
            ),
            (
                (2026, 4, 30, 12, 0, 0),
                "2026-04-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
            ),
            (
                (2026, 2, 28, 23, 59, 59),
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
            ),
            // A leap day is in February, and March starts after it.
            (
                (2028, 2, 29, 8, 0, 0),
                "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z",
            ),
            (
                (2028, 3, 1, 0, 0, 0),
                "2028-03-01T00:00:00Z",
                "2028-04-01T00:00:00Z",
            ),
            // 2100 is no leap year.
            (
                (2100, 2, 28, 0, 0, 0),
                "2100-02-01T00:00:00Z",
                "2100-03-01T00:00:00Z",
            ),
            // The year's end rolls into January of the next.
            (
                (2026, 12, 31, 23, 59, 59),
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                (2027, 1, 1, 0, 0, 0),
                "2027-01-01T00:00:00Z",
                "2027-02-01T00:00:00Z",
            ),
        ];
        for ((y, m, d, hh, mm, ss), start, end) in cases {
            expect(window(Period::Month, at(y, m, d, hh, mm, ss)), start, end);
        }
    }

    #[test]
    fn weeks_start_on_monday_iso_style_across_months_and_years() {
        let cases = [
            // Sunday 2026-11-29 is the last day of the week of Monday the 23rd.
            (
                (2026, 11, 29, 23, 59, 59),
                "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:00Z",
            ),
            // Monday midnight starts a week.
            (
                (2026, 11, 30, 0, 0, 0),
                "2026-11-30T00:00:00Z",
                "2026-12-07T00:00:00Z",
            ),
            // A week across the year's end (ISO week 1 of 2027 starts 2027-01-04;
            // 2026-12-28 to 2027-01-03 is week 53 of 2026).
            (
                (2027, 1, 1, 12, 0, 0),
                "2026-12-28T00:00:00Z",
                "2027-01-04T00:00:00Z",
            ),
            // Across a leap day.
            (
                (2028, 3, 1, 0, 0, 0),
                "2028-02-28T00:00:00Z",
                "2028-03-06T00:00:00Z",
            ),
        ];
        for ((y, m, d, hh, mm, ss), start, end) in cases {
            expect(window(Period::Week, at(y, m, d, hh, mm, ss)), start, end);
        }
        // Before the first Monday after the epoch, the window starts at 0
        // in unsigned seconds: Unix time 0 to 1970-01-05.
        let w = window(Period::Week, 0);
        assert_eq!(rfc3339(w.end), "1970-01-05T00:00:00Z");
        for day in 0..14u64 {
            let t = at(2026, 11, 23, 0, 0, 0) + day * DAY + 3600;
            let date = OffsetDateTime::from_unix_timestamp(window(Period::Week, t).start as i64)
                .expect("time")
                .date();
            assert_eq!(date.weekday(), time::Weekday::Monday);
        }
    }

    #[test]
    fn durations_are_fixed_windows_aligned_to_the_epoch() {
        let six_hours = Period::Every(6 * 3600);
        expect(
            window(six_hours, at(2026, 11, 29, 21, 49, 38)),
            "2026-11-29T18:00:00Z",
            "2026-11-30T00:00:00Z",
        );
        expect(
            window(six_hours, at(2026, 11, 29, 5, 59, 59)),
            "2026-11-29T00:00:00Z",
            "2026-11-29T06:00:00Z",
        );
        // 7 hours do not divide a day: the windows follow the epoch, not midnight.
        let seven = window(Period::Every(7 * 3600), at(1970, 1, 2, 0, 0, 0));
        expect(seven, "1970-01-01T21:00:00Z", "1970-01-02T04:00:00Z");
        let w = window(Period::Every(90), 1_000);
        assert_eq!((w.start, w.end), (990, 1_080));
    }
}
