//! A notification message rendered for each kind of channel. A message is a string or a map
//! with any of `title`, `body` (or `text`), `fields` (a map, shown in order) and `links` (a
//! list of `{text, url}` maps or URL strings, or a map of text to URL). Pure functions, no
//! I/O; the same message always renders the same bytes.

use serde_json::{json, Value};

const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELDS_PER_SECTION: usize = 10;
const SLACK_FIELD_MAX: usize = 2000;

struct Parts {
    title: Option<String>,
    body: Option<String>,
    fields: Vec<(String, String)>,
    links: Vec<(String, String)>,
}

/// A field value as text: lists joined with commas, `()` and empty lists as a dash.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "—".into(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
        other => other.to_string(),
    }
}

fn parts(message: &Value) -> Parts {
    let Value::Object(m) = message else {
        let body = match message {
            Value::Null => None,
            other => Some(value_text(other)),
        };
        return Parts { title: None, body, fields: Vec::new(), links: Vec::new() };
    };
    let text_of = |k: &str| m.get(k).filter(|v| !v.is_null()).map(value_text).filter(|s| !s.is_empty());
    let fields = match m.get("fields") {
        Some(Value::Object(f)) => f.iter().map(|(k, v)| (k.clone(), value_text(v))).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|f| Some((f.get("name").or(f.get("title"))?.as_str()?.to_owned(), value_text(f.get("value")?))))
            .collect(),
        _ => Vec::new(),
    };
    let links = match m.get("links") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|l| match l {
                Value::String(url) => Some((url.clone(), url.clone())),
                Value::Object(o) => {
                    let url = o.get("url")?.as_str()?.to_owned();
                    let text = o.get("text").or(o.get("title")).and_then(Value::as_str).unwrap_or(&url).to_owned();
                    Some((text, url))
                }
                _ => None,
            })
            .collect(),
        Some(Value::Object(o)) => o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect(),
        _ => Vec::new(),
    };
    Parts { title: text_of("title"), body: text_of("body").or_else(|| text_of("text")), fields, links }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max - 1).collect::<String>())
    }
}

/// Plain text: title, body, `name: value` lines, then links.
pub fn plain_text(message: &Value) -> String {
    let p = parts(message);
    let mut lines: Vec<String> = Vec::new();
    lines.extend(p.title);
    lines.extend(p.body);
    lines.extend(p.fields.iter().map(|(k, v)| format!("{k}: {v}")));
    lines.extend(p.links.iter().map(|(t, u)| if t == u { u.clone() } else { format!("{t}: {u}") }));
    lines.join("\n")
}

/// GitHub-flavoured markdown: a heading, the body, fields as a bold-name list, links.
pub fn markdown(message: &Value) -> String {
    let p = parts(message);
    let mut blocks: Vec<String> = Vec::new();
    if let Some(t) = p.title {
        blocks.push(format!("### {t}"));
    }
    blocks.extend(p.body);
    if !p.fields.is_empty() {
        blocks.push(p.fields.iter().map(|(k, v)| format!("- **{k}**: {v}")).collect::<Vec<_>>().join("\n"));
    }
    if !p.links.is_empty() {
        blocks.push(p.links.iter().map(|(t, u)| format!("- [{t}]({u})")).collect::<Vec<_>>().join("\n"));
    }
    blocks.join("\n\n")
}

/// The longest `summary` PagerDuty's Events API v2 takes.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// A PagerDuty Events API v2 `trigger` event: the message's title (or first line) as the
/// summary, its body, fields and links as custom details, and `dedup_key` so a trigger sent
/// twice opens one alert.
pub fn pagerduty_event(message: &Value, routing_key: &str, dedup_key: &str, severity: &str) -> Value {
    let p = parts(message);
    let text = plain_text(message);
    let first_line = text.lines().next().unwrap_or("coord notification");
    let summary = clip(p.title.as_deref().unwrap_or(first_line), PAGERDUTY_SUMMARY_MAX);
    let mut details = serde_json::Map::new();
    if let Some(body) = &p.body {
        details.insert("body".into(), json!(body));
    }
    for (k, v) in &p.fields {
        details.insert(k.clone(), json!(v));
    }
    let links: Vec<Value> = p.links.iter().map(|(t, u)| json!({ "href": u, "text": t })).collect();
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": { "summary": summary, "source": "coord", "severity": severity, "custom_details": details },
    });
    if !links.is_empty() {
        event["links"] = Value::Array(links);
    }
    event
}

/// A Slack incoming-webhook payload: `text` (the notification fallback) and, for a map message,
/// Block Kit blocks (header, body section, field sections, links).
pub fn slack_payload(message: &Value) -> Value {
    let p = parts(message);
    if !message.is_object() {
        return json!({ "text": p.body.unwrap_or_default() });
    }
    let fallback = p.title.clone().or_else(|| p.body.clone()).unwrap_or_else(|| plain_text(message));
    let mut blocks = Vec::new();
    if let Some(t) = &p.title {
        blocks.push(json!({"type": "header", "text": {"type": "plain_text", "text": clip(t, SLACK_HEADER_MAX)}}));
    }
    if let Some(b) = &p.body {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(b, SLACK_TEXT_MAX)}}));
    }
    for chunk in p.fields.chunks(SLACK_FIELDS_PER_SECTION) {
        let fields: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{k}*\n{v}"), SLACK_FIELD_MAX)}))
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !p.links.is_empty() {
        let text = p.links.iter().map(|(t, u)| format!("<{u}|{t}>")).collect::<Vec<_>>().join("  ·  ");
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&text, SLACK_TEXT_MAX)}]}));
    }
    json!({ "text": clip(&fallback, SLACK_TEXT_MAX), "blocks": blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        json!({
            "title": "groom-prs: 1 merged",
            "body": "All done.",
            "fields": {"merged": [12, 14], "waiting": []},
            "links": [{"text": "run", "url": "https://ci.example/run/1"}],
        })
    }

    #[test]
    fn strings_stay_strings() {
        assert_eq!(plain_text(&json!("hi")), "hi");
        assert_eq!(markdown(&json!("hi")), "hi");
        assert_eq!(slack_payload(&json!("hi")), json!({"text": "hi"}));
    }

    #[test]
    fn maps_render_per_channel() {
        assert_eq!(
            plain_text(&summary()),
            "groom-prs: 1 merged\nAll done.\nmerged: 12, 14\nwaiting: —\nrun: https://ci.example/run/1"
        );
        assert_eq!(
            markdown(&summary()),
            "### groom-prs: 1 merged\n\nAll done.\n\n- **merged**: 12, 14\n- **waiting**: —\n\n- [run](https://ci.example/run/1)"
        );
        let slack = slack_payload(&summary());
        assert_eq!(slack["text"], "groom-prs: 1 merged");
        let kinds: Vec<&str> =
            slack["blocks"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["header", "section", "section", "context"]);
        assert_eq!(slack["blocks"][2]["fields"][0]["text"], "*merged*\n12, 14");
    }

    #[test]
    fn slack_limits_are_respected() {
        let long = "x".repeat(500);
        let slack = slack_payload(&json!({ "title": long }));
        assert_eq!(slack["blocks"][0]["text"]["text"].as_str().unwrap().chars().count(), SLACK_HEADER_MAX);
        let many: serde_json::Map<String, Value> = (0..15).map(|i| (format!("f{i:02}"), json!(i))).collect();
        let slack = slack_payload(&json!({ "fields": many }));
        assert_eq!(slack["blocks"].as_array().unwrap().len(), 2);
    }
}
