//! Durable waits: `sleep`, `sleep_until` and `wait_signal`.
//!
//! A wait journals when it ends (its deadline, absolute, from the run's clock) before it
//! waits, as a call whose answer is that deadline, and synced: a run killed while it waits
//! finds the deadline in its journal and a resume waits only what is left of it. A signal is
//! journaled when consumed, as a second call (`signal`) whose answer is the delivery (or the
//! default, on timeout), so a replay returns it without the delivery's file, and a delivery
//! the journal names is never consumed again.
//!
//! A live wait is listed in the run store's wait index (`journal::wait_index`) while it lasts.
//! With `--park-after`, a wait that has lasted that long with no leaf running parks the run:
//! the index marks it parked and the script stops as for a signal, so the run's process exits
//! and its journal ends `parked`; `coord resume` (or `coord daemon`, once its deadline passes
//! or its signal arrives) replays up to the wait and waits only what is left.
//!
//! Replay never waits. In a scenario the clock is virtual: a wait moves it on instead of
//! waiting, and signals come from the scenario's `[[signal]]` entries. Leaves keep running and
//! are journaled as they finish while the script waits. It must not write the signal box's
//! files but to mark a journaled delivery consumed.

use super::replay_decision::{CallKind, CallPlan};
use super::{Clock, Host, HostError, SignalSource};
use crate::journal::entry::{CallSite, Entry};
use crate::journal::signal_box;
use crate::journal::wait_index::{self, WaitEntry};
use serde_json::{json, Value};
use std::time::Duration;

/// The host functions that wait, for the views: `sleep` and `sleep_until` journal one call,
/// `wait_signal` two (`wait_signal`, then `signal` once a delivery is consumed).
pub const WAIT_FUNCTIONS: &[&str] = &["sleep", "sleep_until", "wait_signal"];

/// How long a live wait blocks at a time before it looks again (for an interrupt, a delivery,
/// or its deadline); leaves that finish meanwhile wake it at once.
const POLL: Duration = Duration::from_millis(100);

/// A duration as a script writes it: `"2s"`, `"30m"`, `"1h 30m"`, or a number of seconds.
pub fn duration_ms(value: &Value) -> Result<u64, String> {
    match value {
        Value::String(s) => humantime::parse_duration(s.trim())
            .map(|d| d.as_millis() as u64)
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. \"30s\", \"30m\" or \"2h\"")),
        Value::Number(n) => match n.as_f64() {
            Some(secs) if secs >= 0.0 && secs.is_finite() => Ok((secs * 1000.0).round() as u64),
            _ => Err(format!("{n} is not a duration: seconds must be zero or more")),
        },
        other => {
            Err(format!("a duration is a string like \"30m\" or a number of seconds, not {}", super::json_type(other)))
        }
    }
}

/// A time as `sleep_until` takes it: Unix seconds, or an RFC 3339 string; in Unix milliseconds.
pub fn time_ms(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_i64().map(|s| s * 1000).ok_or_else(|| format!("{n} is not a Unix time in seconds")),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| format!("`{s}` is not an RFC 3339 time (e.g. \"2026-11-21T09:30:00Z\")")),
        other => Err(format!("a time is Unix seconds or an RFC 3339 string, not {}", super::json_type(other))),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A wait's journaled start: when it began and when it gives up (none: it waits for ever).
struct WaitWindow {
    until_ms: Option<i64>,
    /// Whether this run may really wait (a live run or a resume, not a replay).
    live: bool,
}

impl WaitWindow {
    fn from_answer(answer: &Value, live: bool) -> Self {
        WaitWindow { until_ms: answer.get("until_ms").and_then(Value::as_i64), live }
    }
}

/// What `wait_signal` was asked for beyond the signal's name.
pub struct SignalWait {
    /// How long to wait, as the script wrote it; none: for ever.
    pub timeout: Option<Value>,
    /// What a timed-out wait returns (`on_timeout`).
    pub default: Value,
    /// A key a signal webhook must name to reach this wait (e.g. a pull request's number).
    pub key: Option<Value>,
}

/// A consumed delivery (or a timeout), as the `signal` call journals it.
fn received(delivery: Option<&str>, data: Value, at_ms: i64) -> Value {
    json!({ "delivery": delivery, "data": data, "at_ms": at_ms, "timed_out": delivery.is_none() })
}

impl Host {
    /// The run's clock, in Unix milliseconds.
    fn clock_ms(&self) -> i64 {
        match self.clock {
            Clock::Fixed(ms) => ms,
            Clock::System => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// `sleep(duration)`: `given` is the duration as the script wrote it.
    pub fn sleep_for(&mut self, site: &CallSite, given: Value) -> Result<(), HostError> {
        let ms = duration_ms(&given).map_err(|e| HostError::Script(format!("sleep: {e}")))?;
        let window = self.begin_wait("sleep", json!({ "duration": given }), site, |now| Some(now + ms as i64))?;
        self.wait_out(window)
    }

    /// `sleep_until(time)`: a time already past returns at once (and is journaled all the same).
    pub fn sleep_until(&mut self, site: &CallSite, given: Value) -> Result<(), HostError> {
        let until = time_ms(&given).map_err(|e| HostError::Script(format!("sleep_until: {e}")))?;
        let window = self.begin_wait("sleep_until", json!({ "until": given }), site, |_| Some(until))?;
        self.wait_out(window)
    }

    fn wait_out(&mut self, window: Option<WaitWindow>) -> Result<(), HostError> {
        match window {
            Some(WaitWindow { until_ms: Some(until), live }) => {
                let listed = self.enter_wait(live, Some(until), None, None);
                self.wait_until(until, live, listed.as_ref())?;
                self.leave_wait(listed);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Lists a live wait in the run store's wait index (only a run that really waits: not a
    /// replay, not a scenario's virtual clock). Returns the entry, to park or remove it.
    fn enter_wait(
        &self,
        live: bool,
        until_ms: Option<i64>,
        signal: Option<&str>,
        key: Option<String>,
    ) -> Option<WaitEntry> {
        if !live || matches!(self.clock, Clock::Fixed(_)) || !matches!(self.signals, SignalSource::RunDirectory) {
            return None;
        }
        let entry = WaitEntry {
            run_id: self.run_id.clone(),
            until_ms,
            signal: signal.map(str::to_owned),
            key,
            parked: false,
            park_after_ms: self.park_after.map(|d| d.as_millis() as u64),
            delivered: false,
        };
        let root = self.run_dir.parent()?;
        // The index only helps the daemon find the run; the wait goes on without it.
        wait_index::record(root, &entry).ok()?;
        Some(entry)
    }

    fn leave_wait(&self, listed: Option<WaitEntry>) {
        if let (Some(entry), Some(root)) = (listed, self.run_dir.parent()) {
            wait_index::remove(root, &entry.run_id);
        }
    }

    /// Parks the run when `--park-after` asks for it: the wait has lasted that long (since
    /// `since`, this process's start of it) and no leaf is running, whose result would be
    /// lost with the process.
    fn park_if_due(&mut self, listed: Option<&WaitEntry>, since: std::time::Instant) -> Result<(), HostError> {
        let (Some(after), Some(entry)) = (self.park_after, listed) else { return Ok(()) };
        if since.elapsed() < after || self.has_running_leaves() {
            return Ok(());
        }
        let root = self.run_dir.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        wait_index::record(&root, &WaitEntry { parked: true, ..entry.clone() })?;
        // A delivery that came before the entry said parked went unnoted there: take it now.
        if let Some(signal) = &entry.signal {
            if signal_box::pending(&self.run_dir, signal)?.iter().any(|d| !self.consumed_signals.contains(&d.id)) {
                wait_index::record(&root, entry)?;
                return Ok(());
            }
        }
        self.journal.flush()?;
        self.interrupt.park();
        Err(HostError::Parked)
    }

    /// Journals a wait's start (its deadline, from `deadline(now)`) and syncs it, or takes it
    /// from the recording. None when nothing is recorded and nothing may run (a what-if).
    fn begin_wait(
        &mut self,
        function: &str,
        args: Value,
        site: &CallSite,
        deadline: impl FnOnce(i64) -> Option<i64>,
    ) -> Result<Option<WaitWindow>, HostError> {
        let call = self.plan_call(function, None, &args, site, CallKind::Value)?;
        match call.plan {
            CallPlan::Live => {
                let now = self.clock_ms();
                let until = deadline(now);
                let answer = json!({ "since_ms": now, "until_ms": until, "until": until.map(rfc3339) });
                self.journal.append(Entry::call(call.index, function, call.key, site, args, answer.clone(), None))?;
                // The deadline is durable before the wait starts: a resume after a kill -9
                // waits only what is left.
                self.journal.sync()?;
                Ok(Some(WaitWindow::from_answer(&answer, true)))
            }
            CallPlan::Recorded { recorded, live_after } => {
                let answer = self.recorded_answer(recorded)?.into_json();
                Ok(Some(WaitWindow::from_answer(&answer, live_after)))
            }
            CallPlan::Rejournaled(recorded) => {
                let answer = self.recorded_answer(recorded)?.into_json();
                self.journal.append(Entry::call(call.index, function, call.key, site, args, answer.clone(), None))?;
                self.journal.sync()?;
                Ok(Some(WaitWindow::from_answer(&answer, true)))
            }
            CallPlan::NotRecorded { .. } => {
                self.note_unrecorded(call.index, function, &args, site);
                Ok(None)
            }
            CallPlan::Unfinished { .. } => unreachable!("a value call's recorded answer is whole"),
            CallPlan::PastEnd => unreachable!("plan_call stops at the journal's end"),
        }
    }

    /// Waits until `until_ms` on the run's clock: a virtual clock moves on to it; a live run
    /// waits what is left (nothing, if it is past); a replay does not wait.
    fn wait_until(&mut self, until_ms: i64, live: bool, listed: Option<&WaitEntry>) -> Result<(), HostError> {
        if let Clock::Fixed(now) = self.clock {
            self.clock = Clock::Fixed(now.max(until_ms));
            return Ok(());
        }
        if !live {
            return Ok(());
        }
        let since = std::time::Instant::now();
        loop {
            self.check_interrupt()?;
            let left = until_ms - self.clock_ms();
            if left <= 0 {
                return Ok(());
            }
            self.park_if_due(listed, since)?;
            self.wait_a_moment(POLL.min(Duration::from_millis(left as u64)))?;
        }
    }

    /// Blocks for at most `at_most`, journaling any leaf that finishes meanwhile (which ends
    /// the block early), and hands the journal to the OS.
    fn wait_a_moment(&mut self, at_most: Duration) -> Result<(), HostError> {
        self.journal.flush()?;
        match self.scheduler.completion_within(at_most) {
            Ok(Some(c)) => {
                self.finish_session(Box::new(c.result), true)?;
                while let Some(c) = self.scheduler.try_completion() {
                    self.finish_session(Box::new(c.result), true)?;
                }
                self.journal.flush()?;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(()) => Err(HostError::Interrupted),
        }
    }

    /// `wait_signal(name, #{ timeout, on_timeout, key })`: the payload of the next delivery of
    /// `name` this run has not consumed, or the default once `timeout` has passed.
    pub fn wait_signal(&mut self, site: &CallSite, name: &str, wait: SignalWait) -> Result<Value, HostError> {
        if !signal_box::valid_name(name) {
            return Err(HostError::Script(format!(
                "wait_signal: `{name}` is not a signal name (1 to 64 letters, digits, `_`, `-` or `.`)"
            )));
        }
        let SignalWait { timeout, default, key } = wait;
        let timeout_ms = match &timeout {
            Some(t) => Some(duration_ms(t).map_err(|e| HostError::Script(format!("wait_signal: timeout: {e}")))?),
            None => None,
        };
        let key = match key {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                let got = super::json_type(&other);
                return Err(HostError::Script(format!("wait_signal: `key` is a string or a number, not {got}")));
            }
        };
        let mut args = json!({ "name": name });
        if let Some(t) = timeout {
            args["timeout"] = t;
        }
        if let Some(k) = &key {
            args["key"] = json!(k);
        }
        let window = self.begin_wait("wait_signal", args, site, |now| timeout_ms.map(|t| now + t as i64))?;
        let args = json!({ "name": name });
        let call = self.plan_call("signal", None, &args, site, CallKind::Value)?;
        let answer = match call.plan {
            CallPlan::Live => {
                let window = window.unwrap_or(WaitWindow { until_ms: None, live: true });
                let listed = self.enter_wait(window.live, window.until_ms, Some(name), key);
                let answer = self.receive_signal(name, &window, default, listed.as_ref())?;
                self.journal.append(Entry::call(call.index, "signal", call.key, site, args, answer.clone(), None))?;
                self.journal.sync()?;
                self.leave_wait(listed);
                answer
            }
            CallPlan::Recorded { recorded, .. } => {
                let answer = self.recorded_answer(recorded)?.into_json();
                self.took_recorded_signal(&answer);
                answer
            }
            CallPlan::Rejournaled(recorded) => {
                let answer = self.recorded_answer(recorded)?.into_json();
                self.took_recorded_signal(&answer);
                self.journal.append(Entry::call(call.index, "signal", call.key, site, args, answer.clone(), None))?;
                answer
            }
            CallPlan::NotRecorded { .. } => {
                self.note_unrecorded(call.index, "signal", &args, site);
                return Ok(default);
            }
            CallPlan::Unfinished { .. } => unreachable!("a value call's recorded answer is whole"),
            CallPlan::PastEnd => unreachable!("plan_call stops at the journal's end"),
        };
        if let Some(id) = answer.get("delivery").and_then(Value::as_str) {
            if matches!(self.signals, SignalSource::RunDirectory) && self.runs_live() {
                // The journal holds the consumption now; the file only leaves the pending ones.
                let _ = signal_box::mark_consumed(&self.run_dir, id);
            }
        }
        Ok(answer.get("data").cloned().unwrap_or(Value::Null))
    }

    /// A recorded consumption: its delivery is never consumed again, and a virtual clock
    /// moves on to when it was.
    fn took_recorded_signal(&mut self, answer: &Value) {
        if let Some(id) = answer.get("delivery").and_then(Value::as_str) {
            self.consumed_signals.insert(id.to_owned());
        }
        if let (Clock::Fixed(now), Some(at)) = (&self.clock, answer.get("at_ms").and_then(Value::as_i64)) {
            self.clock = Clock::Fixed((*now).max(at));
        }
    }

    /// Waits live for the next unconsumed delivery of `name`, until the window's deadline.
    fn receive_signal(
        &mut self,
        name: &str,
        window: &WaitWindow,
        default: Value,
        listed: Option<&WaitEntry>,
    ) -> Result<Value, HostError> {
        if let SignalSource::Scenario(signals) = &self.signals {
            let next = signals
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("scenario-{i}"), s))
                .find(|(id, s)| s.name == name && !self.consumed_signals.contains(id))
                .map(|(id, s)| (id, s.data.clone(), self.clock_start_ms + s.after_ms as i64));
            let now = self.clock_ms();
            // A delivery after the deadline is left for a later wait.
            let next = next.filter(|(_, _, at)| window.until_ms.is_none_or(|u| *at <= u));
            return match (next, window.until_ms) {
                (Some((id, data, at)), _) => {
                    let at = now.max(at);
                    self.clock = Clock::Fixed(at);
                    self.consumed_signals.insert(id.clone());
                    Ok(received(Some(&id), data, at))
                }
                (None, Some(until)) => {
                    self.clock = Clock::Fixed(now.max(until));
                    Ok(received(None, default, now.max(until)))
                }
                (None, None) => Err(HostError::Script(format!(
                    "wait_signal: the scenario delivers no `{name}` signal and the wait has no timeout, so it \
                     would wait for ever; add a [[signal]] with name = \"{name}\" to the scenario, or a timeout"
                ))),
            };
        }
        let since = std::time::Instant::now();
        loop {
            self.check_interrupt()?;
            let pending = signal_box::pending(&self.run_dir, name)?;
            if let Some(d) = pending.into_iter().find(|d| !self.consumed_signals.contains(&d.id)) {
                self.consumed_signals.insert(d.id.clone());
                return Ok(received(Some(&d.id), d.data, self.clock_ms()));
            }
            let now = self.clock_ms();
            let left = window.until_ms.map(|u| u - now);
            if left.is_some_and(|l| l <= 0) {
                return Ok(received(None, default, now));
            }
            self.park_if_due(listed, since)?;
            let moment = left.map_or(POLL, |l| POLL.min(Duration::from_millis(l as u64)));
            self.wait_a_moment(moment)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{duration_ms, time_ms};
    use serde_json::json;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(duration_ms(&json!("2s")), Ok(2000));
        assert_eq!(duration_ms(&json!("30m")), Ok(1_800_000));
        assert_eq!(duration_ms(&json!("1h 30m")), Ok(5_400_000));
        assert_eq!(duration_ms(&json!(90)), Ok(90_000));
        assert_eq!(duration_ms(&json!(0.5)), Ok(500));
        assert!(duration_ms(&json!(-1)).is_err());
        assert!(duration_ms(&json!("soon")).unwrap_err().contains("not a duration"));
        assert!(duration_ms(&json!(true)).is_err());
    }

    #[test]
    fn times_read_as_seconds_or_rfc3339() {
        assert_eq!(time_ms(&json!(1_700_000_000)), Ok(1_700_000_000_000));
        assert_eq!(time_ms(&json!("2026-01-05T09:00:00Z")), Ok(1_767_603_600_000));
        assert!(time_ms(&json!("tomorrow")).is_err());
    }
}
