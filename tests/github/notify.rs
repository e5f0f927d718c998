//! `notify` channels through `LiveWorld`: Slack blocks, signed webhooks, retries, the file and
//! GitHub channels and what resume can learn from them.

use super::fake_github::{FakeGithub, FakePr};
use super::fake_receiver::FakeReceiver;
use super::{effect, live_world, runtime};
use coord::effects::notify::{
    ChannelConfig, FileChannel, GithubChannel, PagerDutyChannel, PagerDutySeverity, SlackChannel, WebhookChannel,
    WebhookUrl,
};
use coord::effects::{EffectKind, World};
use hmac::{Hmac, Mac};
use indexmap::IndexMap;
use serde_json::{json, Value};

fn notify(channel: &str, message: Value) -> coord::effects::EffectRequest {
    effect(EffectKind::Notify, json!({"channel": channel, "message": message}))
}

fn summary() -> Value {
    json!({"title": "groom-prs on acme/widgets: 1 merged", "fields": {"merged": [21], "escalated": [23, 24]}})
}

/// Environment variables are process-wide: each test uses its own names.
fn set_env(name: &str, value: &str) {
    std::env::set_var(name, value);
}

#[test]
fn slack_gets_blocks_and_the_idempotency_key_and_retries_server_errors() {
    let slack = FakeReceiver::start();
    let secret_path = "/services/T000/B000/sEcReTpArT";
    set_env("COORD_TEST_SLACK_A", &format!("{}{secret_path}", slack.url));
    let channels = IndexMap::from([(
        "slack:#eng".to_owned(),
        ChannelConfig::Slack(SlackChannel { webhook_env: "COORD_TEST_SLACK_A".into() }),
    )]);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, "http://127.0.0.1:9", dir.path(), channels);

    let r = w.act(&notify("slack:#eng", summary()), "run-c:12").unwrap();
    assert_eq!(r, json!({"status": "sent", "channel": "slack:#eng"}));
    let d = &slack.deliveries()[0];
    assert_eq!(d.path, secret_path);
    assert_eq!(d.header("idempotency-key"), Some("run-c:12"));
    assert_eq!(d.header("content-type"), Some("application/json"));
    let payload = d.json();
    assert_eq!(payload["text"], "groom-prs on acme/widgets: 1 merged");
    assert_eq!(
        payload["blocks"][0],
        json!({"type": "header", "text": {"type": "plain_text", "text": "groom-prs on acme/widgets: 1 merged"}})
    );
    assert_eq!(payload["blocks"][1]["fields"][0]["text"], "*merged*\n21");
    assert_eq!(payload["blocks"][1]["fields"][1]["text"], "*escalated*\n23, 24");

    slack.answer_with(&[500, 502]);
    assert_eq!(w.act(&notify("slack:#eng", json!("plain")), "run-c:13").unwrap()["status"], "sent");
    assert_eq!(slack.deliveries().len(), 4, "two 5xx answers, then delivered");
    assert_eq!(slack.deliveries()[3].json(), json!({"text": "plain"}));

    slack.answer_with(&[500, 500, 500]);
    let r = w.act(&notify("slack:#eng", json!("lost")), "run-c:14").unwrap();
    assert_eq!(r["status"], "failed");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("HTTP 500") && error.contains("3 attempts"), "{error}");
    assert!(!error.contains("sEcReT"), "the webhook URL is a credential: {error}");

    slack.answer_with(&[400]);
    assert_eq!(w.act(&notify("slack:#eng", json!("bad")), "run-c:15").unwrap()["status"], "failed");
    assert_eq!(slack.deliveries().len(), 8, "a 4xx is not retried");

    // Slack cannot be asked what it received: resume delivers again, with the same key.
    assert_eq!(w.already_done(&notify("slack:#eng", summary()), "run-c:12").unwrap(), None);
}

#[test]
fn pagerduty_gets_an_events_api_v2_trigger_deduplicated_by_the_idempotency_key() {
    let pd = FakeReceiver::start();
    let routing_key = "R0UT1NGkeyR0UT1NGkeyR0UT1NGkey12";
    set_env("COORD_TEST_PD_KEY", routing_key);
    let channel = ChannelConfig::PagerDuty(PagerDutyChannel {
        routing_key_env: "COORD_TEST_PD_KEY".into(),
        url: Some(format!("{}/v2/enqueue", pd.url)),
        severity: PagerDutySeverity::Critical,
    });
    let channels = IndexMap::from([("pagerduty:oncall".to_owned(), channel)]);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, "http://127.0.0.1:9", dir.path(), channels);

    // PagerDuty answers an accepted event with 202.
    pd.answer_with(&[202]);
    let page = json!({"title": "INC-7: checkout 5xx at 12%", "body": "Paging the on-call.", "fields": {"service": "checkout"}, "links": ["https://runbooks.example/checkout"]});
    let r = w.act(&notify("pagerduty:oncall", page), "run-p:4").unwrap();
    assert_eq!(r, json!({"status": "sent", "channel": "pagerduty:oncall"}));
    let d = &pd.deliveries()[0];
    assert_eq!(d.path, "/v2/enqueue");
    assert_eq!(
        d.json(),
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": "run-p:4",
            "payload": {
                "summary": "INC-7: checkout 5xx at 12%",
                "source": "coord",
                "severity": "critical",
                "custom_details": {"body": "Paging the on-call.", "service": "checkout"},
            },
            "links": [{"href": "https://runbooks.example/checkout", "text": "https://runbooks.example/checkout"}],
        })
    );

    // Rate limited, then accepted: the same event again, so PagerDuty opens one alert.
    pd.answer_with(&[429, 202]);
    assert_eq!(w.act(&notify("pagerduty:oncall", json!("disk full on db-2")), "run-p:5").unwrap()["status"], "sent");
    let [.., first, second] = &pd.deliveries()[..] else { panic!("two more deliveries") };
    assert_eq!(first.json(), second.json());
    assert_eq!(second.json()["payload"]["summary"], "disk full on db-2");
    assert_eq!(second.json()["dedup_key"], "run-p:5");

    // An event PagerDuty refuses is a failed result that does not show the routing key.
    pd.answer_with(&[400]);
    let r = w.act(&notify("pagerduty:oncall", json!("x")), "run-p:6").unwrap();
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r["error"].as_str().unwrap().contains("PagerDuty: HTTP 400"), "{r}");
    assert!(!r.to_string().contains(routing_key), "{r}");

    // Without its key the channel says which variable to set.
    std::env::remove_var("COORD_TEST_PD_KEY");
    let r = w.act(&notify("pagerduty:oncall", json!("x")), "run-p:7").unwrap();
    assert!(r["error"].as_str().unwrap().contains("COORD_TEST_PD_KEY (the PagerDuty routing key) is not set"), "{r}");
}

#[test]
fn webhooks_are_signed_and_refuse_to_go_unsigned() {
    let hook = FakeReceiver::start();
    set_env("COORD_TEST_HOOK_SECRET_B", "s3cret");
    let channels = IndexMap::from([
        (
            "ops".to_owned(),
            ChannelConfig::Webhook(WebhookChannel {
                url: WebhookUrl::Literal(format!("{}/hook", hook.url)),
                secret_env: Some("COORD_TEST_HOOK_SECRET_B".into()),
            }),
        ),
        (
            "ops-unsigned".to_owned(),
            ChannelConfig::Webhook(WebhookChannel {
                url: WebhookUrl::Literal(format!("{}/hook", hook.url)),
                secret_env: Some("COORD_TEST_HOOK_SECRET_UNSET".into()),
            }),
        ),
    ]);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, "http://127.0.0.1:9", dir.path(), channels);

    assert_eq!(w.act(&notify("ops", summary()), "run-d:2").unwrap()["status"], "sent");
    let d = &hook.deliveries()[0];
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&d.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(d.header("x-coord-signature-256"), Some(expected.as_str()));
    let body = d.json();
    assert_eq!(body["channel"], "ops");
    assert_eq!(body["idempotency_key"], "run-d:2");
    assert_eq!(body["message"], summary());
    assert_eq!(body["text"], "groom-prs on acme/widgets: 1 merged\nmerged: 21\nescalated: 23, 24");

    let r = w.act(&notify("ops-unsigned", json!("x")), "run-d:3").unwrap();
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("COORD_TEST_HOOK_SECRET_UNSET"), "{r}");
    assert_eq!(hook.deliveries().len(), 1);
}

#[test]
fn file_channel_appends_jsonl_and_knows_what_it_sent() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let channels =
        IndexMap::from([("audit".to_owned(), ChannelConfig::File(FileChannel { path: "notes/audit.jsonl".into() }))]);
    let mut w = live_world(&rt, "http://127.0.0.1:9", dir.path(), channels);
    for (channel, key) in [("audit", "run-e:1"), ("file:adhoc.jsonl", "run-e:2"), ("audit", "run-e:3")] {
        assert_eq!(w.act(&notify(channel, summary()), key).unwrap()["status"], "sent");
    }
    let lines: Vec<Value> = std::fs::read_to_string(dir.path().join("notes/audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["idempotency_key"], "run-e:1");
    assert_eq!(lines[0]["message"], summary());
    assert!(dir.path().join("adhoc.jsonl").is_file());
    assert_eq!(w.already_done(&notify("audit", summary()), "run-e:3").unwrap().unwrap()["status"], "sent");
    assert_eq!(w.already_done(&notify("audit", summary()), "run-e:4").unwrap(), None);
}

#[test]
fn an_unconfigured_channel_is_a_failed_result_naming_the_missing_table() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut w = live_world(&rt, "http://127.0.0.1:9", dir.path(), IndexMap::new());
    let r = w.act(&notify("slack:#eng", json!("hi")), "run-f:1").unwrap();
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("[channels.\"slack:#eng\"]"), "{r}");
    let channels = IndexMap::from([(
        "slack".to_owned(),
        ChannelConfig::Slack(SlackChannel { webhook_env: "COORD_TEST_UNSET_WEBHOOK".into() }),
    )]);
    let mut w = live_world(&rt, "http://127.0.0.1:9", dir.path(), channels);
    let r = w.act(&notify("slack", json!("hi")), "run-f:2").unwrap();
    assert!(
        r["error"].as_str().unwrap().contains("COORD_TEST_UNSET_WEBHOOK (the Slack webhook URL) is not set"),
        "{r}"
    );
}

#[test]
fn github_channel_comments_in_markdown_and_is_found_on_resume() {
    let gh = FakeGithub::start(100);
    gh.add_pr(FakePr::new(5, "tracking"));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let channels = IndexMap::from([("thread".to_owned(), ChannelConfig::Github(GithubChannel { issue: 5 }))]);
    let mut w = live_world(&rt, &gh.url, dir.path(), channels);
    let r = w.act(&notify("thread", summary()), "run-g:4").unwrap();
    assert_eq!(r["status"], "sent", "{r}");
    let body = gh.comments(5)[0]["body"].as_str().unwrap().to_owned();
    assert!(body.starts_with("### groom-prs on acme/widgets: 1 merged\n\n- **merged**: 21"), "{body}");
    assert_eq!(w.act(&notify("github:#6", json!("x")), "run-g:5").unwrap()["status"], "failed");
    assert!(w.already_done(&notify("thread", summary()), "run-g:4").unwrap().is_some());
    assert_eq!(w.already_done(&notify("thread", summary()), "run-g:9").unwrap(), None);
}
