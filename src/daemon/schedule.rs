//! A pipeline's schedule: a cron expression read in an IANA time zone, and the fire times it
//! gives (the next one after an instant, the ones missed between two instants).
//!
//! Owns cron parsing (through `croner`: 5 fields, or 6 with seconds first; day of week 0-7
//! with 0 and 7 Sunday, as in Vixie cron) and time zone arithmetic, daylight saving included.
//! It must not read the clock: every function takes the instants it works on, so callers and
//! tests decide what "now" is.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("`{expression}` is not a cron expression: {reason}")]
    Cron { expression: String, reason: String },
    #[error("`{expression}` never fires")]
    NeverFires { expression: String },
    #[error("`{0}` is not an IANA time zone")]
    Timezone(String),
}

#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

impl Schedule {
    /// Parses `expression` read in `timezone` (an IANA name; `None` is UTC).
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let cron = Cron::from_str(expression)
            .map_err(|e| ScheduleError::Cron { expression: expression.to_owned(), reason: e.to_string() })?;
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::Timezone(name.to_owned()))?,
        };
        let schedule = Schedule { expression: expression.trim().to_owned(), cron, timezone };
        // A pattern like `0 0 30 2 *` parses but has no fire time; say so now, not never.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::NeverFires { expression: expression.to_owned() });
        }
        Ok(schedule)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron.find_next_occurrence(&local, false).ok().map(|n| n.with_timezone(&Utc))
    }

    /// The latest `limit` fire times in `(after, until]`, oldest first. Walks back from
    /// `until`, so a long downtime under a frequent schedule costs `limit` steps, not one per
    /// missed fire.
    pub fn missed(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut found = Vec::new();
        if limit == 0 || until <= after {
            return found;
        }
        let mut cursor = until.with_timezone(&self.timezone);
        let mut inclusive = true;
        while found.len() < limit {
            let Ok(previous) = self.cron.find_previous_occurrence(&cursor, inclusive) else {
                break;
            };
            if previous.with_timezone(&Utc) <= after {
                break;
            }
            found.push(previous.with_timezone(&Utc));
            cursor = previous;
            inclusive = false;
        }
        found.reverse();
        found
    }

    /// `t` on the schedule's wall clock, as RFC 3339 (what logs show).
    pub fn local_rfc3339(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.timezone).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn weekday_mornings_in_berlin() {
        let s = Schedule::parse("0 9 * * 1-5", Some("Europe/Berlin")).unwrap();
        // Saturday 2026-11-21 10:00 UTC: the next fire is Monday 09:00 CET (08:00 UTC).
        assert_eq!(s.next_after(at("2026-11-21T10:00:00Z")), Some(at("2026-11-23T08:00:00Z")));
        // In summer, Berlin is UTC+2.
        assert_eq!(s.next_after(at("2026-07-01T06:59:00Z")), Some(at("2026-07-01T07:00:00Z")));
        assert_eq!(s.local_rfc3339(at("2026-11-23T08:00:00Z")), "2026-11-23T09:00:00+01:00");
    }

    #[test]
    fn seconds_are_allowed() {
        let s = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(s.next_after(at("2026-01-01T00:00:00Z")), Some(at("2026-01-01T00:00:02Z")));
    }

    #[test]
    fn missed_fires_are_the_latest_ones_oldest_first() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let missed = s.missed(at("2026-01-01T00:30:00Z"), at("2026-01-01T05:00:00Z"), 2);
        assert_eq!(missed, vec![at("2026-01-01T04:00:00Z"), at("2026-01-01T05:00:00Z")]);
        let all = s.missed(at("2026-01-01T00:30:00Z"), at("2026-01-01T05:10:00Z"), 100);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0], at("2026-01-01T01:00:00Z"));
        assert!(s.missed(at("2026-01-01T00:30:00Z"), at("2026-01-01T00:59:00Z"), 1).is_empty());
        assert!(s.missed(at("2026-01-01T05:00:00Z"), at("2026-01-01T01:00:00Z"), 1).is_empty());
        assert!(s.missed(at("2026-01-01T00:30:00Z"), at("2026-01-01T05:00:00Z"), 0).is_empty());
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(matches!(Schedule::parse("61 * * * *", None), Err(ScheduleError::Cron { .. })));
        assert!(matches!(Schedule::parse("* * *", None), Err(ScheduleError::Cron { .. })));
        assert!(matches!(Schedule::parse("0 0 30 2 *", None), Err(ScheduleError::NeverFires { .. })));
        assert_eq!(
            Schedule::parse("0 9 * * *", Some("Europe/Berlinn")).unwrap_err(),
            ScheduleError::Timezone("Europe/Berlinn".into())
        );
    }
}
