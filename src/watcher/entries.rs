//! What the poller takes from Proxmox's answers, checked one by one: a cluster log line or a
//! task becomes an [`Entry`] only with a vmid, a time within a sane window around now (a
//! clock far ahead, or a `time` of 10^12, would otherwise stay the newest "changed by" for
//! ever), and fields cut to a bound; a node name goes into a request path only when it is
//! one Proxmox allows. An answer that is not a list is an API error, never "nothing".

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::attribution::{Entry, split_actor, vmid_of_message};
use crate::report::AttributionSource;
use crate::unmanaged::{CheckError, CheckReason};

/// A message longer than this (UTF-16 units) is cut: 20 entries per change are stored in
/// every report.
const MESSAGE_MAX: usize = 256;
/// A user or token id longer than this is cut.
const NAME_MAX: usize = 128;
/// How far ahead of the exporter's clock an entry may be (clocks of a cluster differ a bit).
const AHEAD_MAX: chrono::Duration = chrono::Duration::hours(1);

/// The list in a Proxmox answer; `{"data": null}` or an object is an API error.
pub(super) fn list<'a>(data: &'a Value, what: &str) -> Result<&'a [Value], CheckError> {
    data.as_array().map(Vec::as_slice).ok_or_else(|| {
        CheckError::new(
            CheckReason::Api,
            format!("{what}: the answer's data is not a list ({})", kind(data)),
        )
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A node name as Proxmox allows it (a DNS label: letters, digits, `-`), safe as a path
/// segment.
pub(super) fn node_name(v: &Value) -> Option<&str> {
    v.as_str()
        .filter(|name| crate::unmanaged::api::valid_node(name))
}

/// A Unix time from Proxmox, when it lies between 2000 and an hour ahead of `now`.
pub(super) fn time(v: &Value, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let t = DateTime::from_timestamp(v.as_i64()?, 0)?;
    let earliest = DateTime::from_timestamp(946_684_800, 0)?;
    (t >= earliest && t <= now + AHEAD_MAX).then_some(t)
}

fn cut(text: &str, max: usize) -> String {
    crate::text::cut(text, max, "...").into_owned()
}

/// Who acted: (user, token), cut.
fn actor(v: &Value) -> (String, Option<String>) {
    let (user, token) = split_actor(v.as_str().unwrap_or(""));
    (cut(&user, NAME_MAX), token.map(|t| cut(&t, NAME_MAX)))
}

/// One cluster log line about a guest, checked; `by_terraform` says whether a (user,
/// token) is Terraform's own.
pub(super) fn log_entry(
    line: &Value,
    now: DateTime<Utc>,
    by_terraform: impl Fn(&str, Option<&str>) -> bool,
) -> Option<Entry> {
    let message = line["msg"].as_str()?;
    let vmid = vmid_of_message(message)?;
    let node = node_name(&line["node"])?;
    let time = time(&line["time"], now)?;
    let uid = line["uid"].as_u64()?;
    let (user, token) = actor(&line["user"]);
    Some(Entry {
        vmid,
        node: node.to_owned(),
        time: Some(time),
        by_terraform: by_terraform(&user, token.as_deref()),
        user,
        token,
        via: AttributionSource::ClusterLog,
        message: cut(message, MESSAGE_MAX),
        key: format!("log:{node}:{uid}:{}", time.timestamp()),
    })
}

/// The key an entry is known by. The time is part of a log line's key: when pmxcfs restarts
/// its ring starts again at uid 1, and a new line must not be taken for one already kept.
/// A journal written before keys had it is read as if it had.
pub(super) fn key(e: &Entry) -> String {
    match (e.key.matches(':').count(), e.time) {
        (2, Some(t)) if e.key.starts_with("log:") => format!("{}:{}", e.key, t.timestamp()),
        _ => e.key.clone(),
    }
}

/// One task of `node` about a guest, checked.
pub(super) fn task_entry(
    task: &Value,
    node: &str,
    now: DateTime<Utc>,
    by_terraform: impl Fn(&str, Option<&str>) -> bool,
) -> Option<Entry> {
    let kind = task["type"].as_str()?;
    let upid = task["upid"].as_str()?;
    let vmid = task["id"].as_str()?.parse().ok()?;
    let time = time(&task["starttime"], now)?;
    let user = cut(task["user"].as_str().unwrap_or(""), NAME_MAX);
    let token = task["tokenid"].as_str().map(|t| cut(t, NAME_MAX));
    Some(Entry {
        vmid,
        node: node.to_owned(),
        time: Some(time),
        by_terraform: by_terraform(&user, token.as_deref()),
        user,
        token,
        via: AttributionSource::Task,
        message: cut(kind, MESSAGE_MAX),
        key: format!("task:{}", cut(upid, MESSAGE_MAX)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    fn nobody(_: &str, _: Option<&str>) -> bool {
        false
    }

    /// Regression: `{"data": null}` from `/cluster/log` was a successful read of nothing,
    /// and every change since got `changed_by: []`.
    #[test]
    fn an_answer_that_is_not_a_list_is_an_api_error() {
        assert!(list(&json!([]), "GET /cluster/log").is_ok());
        for data in [json!(null), json!({}), json!("x")] {
            let e = list(&data, "GET /cluster/log").unwrap_err();
            assert_eq!(e.reason, CheckReason::Api);
            assert!(e.summary.contains("not a list"), "{}", e.summary);
        }
    }

    /// Regression: an entry with a `time` of 10^12 (or a node's clock years ahead) stayed the
    /// newest "changed by" for ever and was written as `+33658-...`, not RFC 3339.
    #[test]
    fn an_entry_from_the_far_future_or_the_distant_past_is_left_out() {
        let line = |time: i64| {
            json!({"uid": 7, "node": "pve1", "time": time, "user": "root@pam",
                   "msg": "update VM 100: -memory 3072"})
        };
        let ok = log_entry(&line(now().timestamp() - 5), now(), nobody).unwrap();
        assert_eq!(ok.vmid, 100);
        assert_eq!(ok.key, format!("log:pve1:7:{}", now().timestamp() - 5));
        assert!(log_entry(&line(1_000_000_000_000), now(), nobody).is_none());
        assert!(log_entry(&line(now().timestamp() + 86_400), now(), nobody).is_none());
        assert!(log_entry(&line(0), now(), nobody).is_none());
        assert!(log_entry(&line(-5), now(), nobody).is_none());
    }

    /// Regression: after a pmxcfs restart the ring starts again at uid 1, and its new lines
    /// were dropped as already seen (the key was node and uid only).
    #[test]
    fn a_line_of_a_restarted_ring_is_not_taken_for_a_kept_one() {
        let line = |time: i64| {
            json!({"uid": 1, "node": "pve1", "time": time, "user": "root@pam",
                   "msg": "update VM 100: -memory 3072"})
        };
        let before = log_entry(&line(now().timestamp() - 600), now(), nobody).unwrap();
        let after = log_entry(&line(now().timestamp() - 5), now(), nobody).unwrap();
        assert_ne!(key(&before), key(&after));
        // A journal from before: its key gains the time, and the line read again matches.
        let mut old = before.clone();
        old.key = "log:pve1:1".into();
        assert_eq!(key(&old), key(&before));
        assert_eq!(key(&after), after.key);
    }

    /// Regression: a node name like `pve 1\r\nX: y` or `../../access` went into a request
    /// path unchecked, and failed the whole read.
    #[test]
    fn only_node_names_proxmox_allows_reach_a_path() {
        assert_eq!(node_name(&json!("pve-1")), Some("pve-1"));
        for bad in [
            json!("pve 1\r\nX: y"),
            json!("../../access"),
            json!(""),
            json!("-x"),
            json!(5),
            json!("a".repeat(64)),
        ] {
            assert_eq!(node_name(&bad), None, "{bad}");
        }
        let line = json!({"uid": 1, "node": "../x", "time": now().timestamp(),
                          "user": "root@pam", "msg": "update VM 100: -cores 2"});
        assert!(log_entry(&line, now(), nobody).is_none());
    }

    /// Regression: entries were kept whole: 20 per change of 4 KB messages made every stored
    /// report 4 MB larger.
    #[test]
    fn long_fields_are_cut() {
        let line = json!({"uid": 1, "node": "pve1", "time": now().timestamp(),
                          "user": format!("{}@pam!{}", "u".repeat(500), "t".repeat(500)),
                          "msg": format!("update VM 100: -description {}", "x".repeat(4000))});
        let e = log_entry(&line, now(), nobody).unwrap();
        assert!(
            crate::text::units(&e.message) <= MESSAGE_MAX + 3,
            "{}",
            e.message.len()
        );
        assert!(e.user.len() <= NAME_MAX + 3);
        assert!(e.token.unwrap().len() <= NAME_MAX + 3);
        let task = json!({"type": "qmconfig", "upid": "UPID:pve1:1", "id": "100",
                          "starttime": now().timestamp(), "user": "root@pam"});
        assert_eq!(task_entry(&task, "pve1", now(), nobody).unwrap().vmid, 100);
    }
}
