//! Masks secrets in everything coord writes: the journal, blobs, `run.log`, logs on stderr,
//! stdout, reports.
//!
//! A [`Redactor`] knows two kinds of secret. Values: those of every variable named as a
//! credential (by `coord.toml`'s `*_env` settings, as the providers' usual key variables, or by
//! a name ending in `_KEY`, `_TOKEN`, `_SECRET`, `_PASSWORD` or `_WEBHOOK_URL`), with the
//! parts of a URL-valued one that are secrets on their own (its path, long path segments,
//! query values, password). Shapes: tokens recognisable without knowing them (GitHub's `ghp_`
//! and kin, `sk-` keys, Slack's `xox?-` tokens and webhook paths, Google's `AIza` keys,
//! `Authorization`/`Bearer` values, URL userinfo, `token=`/`key=`/`sig=` query values). Both
//! become [`MASK`].
//!
//! One redactor serves the whole process ([`process`]): built from the environment the first
//! time it is asked for, and rebuilt only when a configuration names a credential variable it
//! did not know ([`learn_variables`]). Writers take it when they are made. Masking text that is
//! JSON never breaks the JSON: a mask never starts or ends inside an escape sequence.
//!
//! It must not log, store or return the values it holds, and it depends on nothing else in
//! coord (journal, views, harnesses and effects all use it).

use regex::bytes::Regex;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "[redacted]";

/// Values shorter than this are not treated as secrets: masking `1` or `true` everywhere would
/// wreck every text and protect nothing.
pub const MIN_SECRET_LEN: usize = 8;

/// Variables that hold provider keys even when no config names them.
pub const USUAL_KEY_VARIABLES: [&str; 9] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "CODEX_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "COORD_API_KEY",
    "GITHUB_TOKEN",
    "GH_TOKEN",
];

/// A variable whose name ends so holds a secret, whatever config says.
const SECRET_NAME_SUFFIXES: [&str; 5] = ["_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_WEBHOOK_URL"];

/// A path segment of a URL-valued secret at least this long is a secret on its own (a
/// webhook's token), so a server echoing only the segment back does not reveal it.
const SECRET_SEGMENT_LEN: usize = 12;

/// Token shapes. Every alternative starts with a literal, so the regex engine scans for those
/// literals first and runs the pattern only where one occurs: masking costs a fast scan of text
/// that holds none. No character class admits `\` or `"`, so in JSON text a match stays inside
/// one string (the `Authorization` alternative's quotes are part of the kept prefix).
const SHAPES: &str = concat!(
    r"(?:gh[pousr]_[A-Za-z0-9]{20,}",
    r"|github_pat_[A-Za-z0-9_]{20,}",
    // `\b`, so `task-...` is not a key; `\n` and kin stand before a key at a line start in JSON.
    r"|(?-u:\b)sk-[A-Za-z0-9_-]{20,}",
    r"|\\[nrt]sk-[A-Za-z0-9_-]{20,}",
    r"|xox[abposr]-[A-Za-z0-9-]{10,}",
    r"|AIza[0-9A-Za-z_-]{30,}",
    r"|[Bb]earer[ \t]+[A-Za-z0-9._~+/=-]{8,}",
    r#"|[Aa]uthorization(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?(?:[Bb]earer|[Tt]oken|[Bb]asic)[ \t]+[A-Za-z0-9._~+/=-]{6,}"#,
    r#"|://[^\s/?#@"'\\<>]+@"#,
    r#"|[?&](?:access_token|token|api_key|apikey|key|sig|signature|secret|client_secret|password)=[^&\s"'\\#<>]{6,}"#,
    r"|/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{6,})",
);

/// No secret fits in fewer bytes (the shortest shape is user info, `://a:b@`; known values are
/// longer): most of a result's strings are shorter, and skip the scan.
const SHORTEST_SECRET: usize = 7;

static SHAPE_FINDER: LazyLock<Regex> = LazyLock::new(|| Regex::new(SHAPES).expect("the token shapes compile"));

/// The secrets one process knows, and the masking of text by them.
#[derive(Clone, Default)]
pub struct Redactor {
    /// The variables whose values are known (so [`learn_variables`] can tell what is new).
    variables: BTreeSet<String>,
    /// Known values as they appear in text, and JSON-escaped.
    in_text: Option<Literals>,
    /// Known values as they appear inside JSON strings only: a value holding `"` would, unescaped,
    /// match across JSON's own quotes.
    in_json: Option<Literals>,
}

#[derive(Clone)]
struct Literals {
    finder: Regex,
}

impl Literals {
    fn new(values: &BTreeSet<String>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut ordered: Vec<&String> = values.iter().collect();
        // Longest first: a value containing another is masked whole (alternation takes the first
        // alternative that matches at a position).
        ordered.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        let pattern = ordered.iter().map(|v| regex::escape(v)).collect::<Vec<_>>().join("|");
        let finder = regex::bytes::RegexBuilder::new(&pattern)
            .unicode(false)
            .size_limit(64 << 20)
            .build()
            .expect("escaped literals compile");
        Some(Literals { finder })
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} variables)", self.variables.len())
    }
}

/// Whether the text is JSON (a journal line, a stored output) or anything else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Json,
    Text,
}

impl Redactor {
    /// Known secret values (besides the shapes every redactor masks).
    pub fn with_values(values: impl IntoIterator<Item = String>) -> Self {
        Self::build(BTreeSet::new(), values)
    }

    /// The values of `variables`, of the usual key variables and of every variable whose name
    /// ends like a secret's, read from this process's environment now.
    pub fn from_environment(variables: impl IntoIterator<Item = String>) -> Self {
        let mut names: BTreeSet<String> = variables.into_iter().collect();
        names.extend(USUAL_KEY_VARIABLES.iter().map(|v| v.to_string()));
        let mut values = Vec::new();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else { continue };
            if names.contains(name) || is_secret_name(name) {
                names.insert(name.to_owned());
                values.push(value.to_owned());
            }
        }
        Self::build(names, values)
    }

    fn build(variables: BTreeSet<String>, values: impl IntoIterator<Item = String>) -> Self {
        let mut in_json = BTreeSet::new();
        let mut in_text = BTreeSet::new();
        for value in values {
            for part in secret_parts(value.trim()) {
                let escaped = json_escaped(&part);
                if escaped != part {
                    in_text.insert(escaped.clone());
                }
                in_json.insert(escaped);
                in_text.insert(part);
            }
        }
        Redactor { variables, in_text: Literals::new(&in_text), in_json: Literals::new(&in_json) }
    }

    /// True when the redactor knows no value (it still masks the shapes).
    pub fn knows_no_values(&self) -> bool {
        self.in_text.is_none()
    }

    /// `text` with every secret masked.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.mask_in(text.as_bytes(), Form::Text) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(bytes) => Cow::Owned(into_string(bytes)),
        }
    }

    /// `bytes` (any text: a transcript, a log line) with every secret masked.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        self.mask_in(bytes, Form::Text)
    }

    /// Serialized JSON with every secret inside its strings masked; the result is JSON too.
    pub fn mask_json<'a>(&self, json: &'a [u8]) -> Cow<'a, [u8]> {
        self.mask_in(json, Form::Json)
    }

    /// [`Redactor::mask_json`] of JSON text.
    pub fn mask_json_text(&self, json: &str) -> String {
        match self.mask_json(json.as_bytes()) {
            Cow::Borrowed(_) => json.to_owned(),
            Cow::Owned(bytes) => into_string(bytes),
        }
    }

    /// Masks every string (and map key) inside `value`.
    pub fn mask_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.mask(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            Value::Object(map) => {
                if map.keys().any(|k| matches!(self.mask(k), Cow::Owned(_))) {
                    let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                    for (k, v) in entries {
                        map.insert(self.mask(&k).into_owned(), v);
                    }
                }
                map.values_mut().for_each(|v| self.mask_value(v));
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Masks `text` in place.
    pub fn mask_string(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.mask(text) {
            *text = masked;
        }
    }

    fn mask_in<'a>(&self, input: &'a [u8], form: Form) -> Cow<'a, [u8]> {
        if input.len() < SHORTEST_SECRET {
            return Cow::Borrowed(input);
        }
        let literals = match form {
            Form::Json => self.in_json.as_ref(),
            Form::Text => self.in_text.as_ref(),
        };
        // Known values first: a shape match could end inside a value and leave its rest.
        let after_values = match literals {
            Some(l) => mask_matches(&l.finder, input, |m| Some((0, m.len()))),
            None => Cow::Borrowed(input),
        };
        match after_values {
            Cow::Borrowed(b) => mask_matches(&SHAPE_FINDER, b, secret_of_shape),
            Cow::Owned(v) => Cow::Owned(mask_matches(&SHAPE_FINDER, &v, secret_of_shape).into_owned()),
        }
    }
}

/// Replaces, in every match of `finder`, the part `secret` picks (offsets within the match;
/// `None` leaves the match alone), never starting or ending inside an escape sequence.
fn mask_matches<'a>(
    finder: &Regex,
    input: &'a [u8],
    secret: impl Fn(&[u8]) -> Option<(usize, usize)>,
) -> Cow<'a, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for m in finder.find_iter(input) {
        let Some((from, to)) = secret(m.as_bytes()) else { continue };
        let (start, end) = escape_safe(input, m.start() + from, m.start() + to);
        if start < copied {
            continue;
        }
        let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
        buf.extend_from_slice(&input[copied..start]);
        buf.extend_from_slice(MASK.as_bytes());
        copied = end;
    }
    match out {
        None => Cow::Borrowed(input),
        Some(mut buf) => {
            buf.extend_from_slice(&input[copied..]);
            Cow::Owned(buf)
        }
    }
}

/// Widens `start..end` so that it neither starts nor ends inside a backslash escape (`\n`,
/// `\"`, `\u00e9`): masking part of one would leave a broken escape in JSON.
fn escape_safe(text: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    // An escape covering `start`: a backslash (itself unescaped) up to five bytes before it.
    for back in 1..=5.min(start) {
        let at = start - back;
        if text[at] == b'\\' && unescaped(text, at) {
            let len = if text.get(at + 1) == Some(&b'u') { 6 } else { 2 };
            if at + len > start {
                start = at;
            }
            break;
        }
    }
    let mut i = start;
    while i < end {
        if text[i] == b'\\' {
            i += if text.get(i + 1) == Some(&b'u') { 6 } else { 2 };
        } else {
            i += 1;
        }
    }
    end = i.min(text.len()).max(end);
    (start, end)
}

/// Whether the backslash at `at` starts an escape (is not itself escaped).
fn unescaped(text: &[u8], at: usize) -> bool {
    text[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
}

/// Which part of a shape match is the secret.
fn secret_of_shape(m: &[u8]) -> Option<(usize, usize)> {
    let len = m.len();
    match m {
        [b':', b'/', b'/', ..] => {
            // URL userinfo: a password, or a token given as the user name; not `git@`.
            let info = &m[3..len - 1];
            (info.contains(&b':') || info.len() >= 16).then_some((3, len - 1))
        }
        [b'?' | b'&', ..] => Some((m.iter().position(|&b| b == b'=')? + 1, len)),
        [b'/', ..] => Some((m.iter().rposition(|&b| b == b'/')? + 1, len)),
        [b'B' | b'b' | b'A' | b'a', ..] if !m.starts_with(b"AIza") => {
            Some((m.iter().rposition(|&b| b == b' ' || b == b'\t')? + 1, len))
        }
        [b'\\', ..] => is_random_key(&m[2..]).then_some((2, len)),
        [b's', b'k', b'-', ..] => is_random_key(m).then_some((0, len)),
        _ => Some((0, len)),
    }
}

/// An `sk-` key is random: it mixes digits, capitals and small letters, where an identifier
/// such as `sk-learn-upgrade-notes` does not.
fn is_random_key(m: &[u8]) -> bool {
    m.iter().any(u8::is_ascii_digit) && m.iter().any(u8::is_ascii_uppercase) && m.iter().any(u8::is_ascii_lowercase)
}

fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_SUFFIXES.iter().any(|s| upper.ends_with(s))
}

/// A value, and the parts of it that are secrets on their own when it is a URL.
fn secret_parts(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    if value.chars().count() < MIN_SECRET_LEN {
        return parts;
    }
    parts.push(value.to_owned());
    if let Ok(url) = reqwest::Url::parse(value) {
        if url.has_host() {
            // As written, not as the parser normalised it: the text that leaks is the written one.
            let after_scheme = value.split_once("://").map_or("", |(_, rest)| rest);
            let path_and_query = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
            let path_and_query = path_and_query.split('#').next().unwrap_or_default();
            if path_and_query.len() >= MIN_SECRET_LEN {
                parts.push(path_and_query.to_owned());
            }
            let path = path_and_query.split('?').next().unwrap_or_default();
            let segments = path.split('/').chain(url.path().split('/'));
            parts.extend(segments.filter(|s| s.len() >= SECRET_SEGMENT_LEN).map(str::to_owned));
            parts.extend(url.query_pairs().map(|(_, v)| v.into_owned()).filter(|v| v.len() >= MIN_SECRET_LEN));
            parts.extend(url.password().filter(|p| p.len() >= MIN_SECRET_LEN).map(str::to_owned));
        }
    }
    parts
}

fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The process's redactor.
static PROCESS: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// The process's redactor, built from the environment on first use.
pub fn process() -> Arc<Redactor> {
    if let Some(r) = PROCESS.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return r.clone();
    }
    let mut slot = PROCESS.write().unwrap_or_else(|e| e.into_inner());
    // The shapes are compiled now, at start-up, not by the first line a run writes: between a
    // journal's creation and its first entry a crash leaves a run that never started.
    LazyLock::force(&SHAPE_FINDER);
    slot.get_or_insert_with(|| Arc::new(Redactor::from_environment(Vec::new()))).clone()
}

/// Adds credential variables a configuration names (`*_env` settings) to the process's
/// redactor; it is rebuilt only when one of them is new to it.
pub fn learn_variables(names: impl IntoIterator<Item = String>) {
    let current = process();
    let new: Vec<String> = names.into_iter().filter(|n| !current.variables.contains(n)).collect();
    if new.is_empty() {
        return;
    }
    let mut all: HashSet<String> = current.variables.iter().cloned().collect();
    all.extend(new);
    let rebuilt = Arc::new(Redactor::from_environment(all));
    *PROCESS.write().unwrap_or_else(|e| e.into_inner()) = Some(rebuilt);
}

/// `text` masked by the process's redactor.
pub fn mask(text: &str) -> String {
    process().mask(text).into_owned()
}

/// A writer that masks what passes through it with the process's redactor: stderr for logs.
/// Each `write` is taken as whole lines (the log formatter writes one event at a time).
#[derive(Clone, Copy, Debug, Default)]
pub struct MaskingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(&process().mask_bytes(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a> for MaskingWriter<M> {
    type Writer = MaskingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter(self.0.make_writer())
    }
}

/// The last `max` bytes of a process's output, for error messages, masked.
pub fn masked_tail(bytes: &[u8], max: usize) -> String {
    // Masked before it is cut: a cut through a secret would leave a piece no mask recognises.
    let masked = process().mask_bytes(bytes);
    let text = String::from_utf8_lossy(&masked);
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shapes_only() -> Redactor {
        Redactor::default()
    }

    #[test]
    fn known_values_are_masked_everywhere_longest_first() {
        let r = Redactor::with_values(["sk-test-SECRET123".to_owned(), "short".to_owned(), "SECRET123".to_owned()]);
        assert_eq!(r.mask("key sk-test-SECRET123 and sk-test-SECRET123"), "key [redacted] and [redacted]");
        assert_eq!(r.mask("short stays; SECRET123 goes"), "short stays; [redacted] goes");
        assert_eq!(&*r.mask_bytes(b"x-api-key: sk-test-SECRET123\n"), b"x-api-key: [redacted]\n");
        let mut v = json!({"echo": ["sk-test-SECRET123"], "sk-test-SECRET123": 1});
        r.mask_value(&mut v);
        assert_eq!(v, json!({"echo": ["[redacted]"], "[redacted]": 1}));
    }

    #[test]
    fn token_shapes_are_masked() {
        let r = shapes_only();
        let cases = [
            ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 end", "token [redacted] end"),
            ("gho_ABCDEFGHIJKLMNOPQRSTUVWX ghs_ABCDEFGHIJKLMNOPQRSTUVWX", "[redacted] [redacted]"),
            ("ghu_ABCDEFGHIJKLMNOPQRSTUVWX/ghr_ABCDEFGHIJKLMNOPQRSTUVWX", "[redacted]/[redacted]"),
            ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[redacted]"),
            ("OPENAI=sk-proj-Ab3dEf9hIjKlMnOpQrStUvWx", "OPENAI=[redacted]"),
            ("key: sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2-Jh1", "key: [redacted]"),
            ("xoxb-123456789012-abcdefABCDEF and xoxp-1234-5678-abcdefghij", "[redacted] and [redacted]"),
            ("google AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "google [redacted]"),
            ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer [redacted]"),
            ("authorization: token 0123456789abcdef", "authorization: token [redacted]"),
            ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic [redacted]"),
            ("https://user:hunter22@example.com/x", "https://[redacted]@example.com/x"),
            ("https://x-access-token-abcdef0123456789@github.com/o/r", "https://[redacted]@github.com/o/r"),
            ("GET /hook?token=abcdef123&page=2", "GET /hook?token=[redacted]&page=2"),
            ("https://x.test/a?sig=ZmFrZXNpZw%3D&key=AAAABBBB", "https://x.test/a?sig=[redacted]&key=[redacted]"),
            (
                "404 no_team for /services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "404 no_team for /services/T000/B000/[redacted]",
            ),
        ];
        for (text, masked) in cases {
            assert_eq!(r.mask(text), masked, "{text}");
        }
    }

    #[test]
    fn ordinary_text_is_not_mangled() {
        let r = shapes_only();
        for text in [
            "task-1234 risk-Assessment2024Q1Report desk-lamp",
            "sk-learn-upgrade-notes-for-everyone",
            "the sk key; sk-short",
            "commit 4f1c2d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e and sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "git@github.com:acme/widgets.git and ssh://git@github.com/acme/widgets",
            "https://github.com/acme/widgets/pull/12?state=open&per_page=100",
            "the bearer of news; token limit exceeded; Authorization required",
            "ghp_short and xoxb- and AIza",
            "{\"verdict\":\"minor\",\"summary\":\"token=none slack=none\"}",
        ] {
            assert_eq!(r.mask(text), text);
        }
    }

    #[test]
    fn masking_json_keeps_it_json() {
        let secret = "nfoo\"bar\\baz-0123";
        let r = Redactor::with_values([secret.to_owned(), "uvwxyz123456".to_owned(), "clé-secrète".to_owned()]);
        let value = json!({
            "a": format!("x{secret}y"),
            "b": format!("line\n{secret}"),
            "c": "\u{1}uvwxyz123456",
            "d": "tab\tsk-Ab3dEf9hIjKlMnOpQrStUvWx1",
            "e": "nl\nghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "f": "plain \\nfoo\"bar text",
            "g": format!("\n{}", &secret[1..]),
            "h": "café-clé-secrète-42 ok",
        });
        let text = serde_json::to_vec(&value).unwrap();
        let masked = r.mask_json(&text);
        let back: serde_json::Value = serde_json::from_slice(&masked).expect("still JSON");
        let all = back.to_string();
        assert!(
            !all.contains("baz-0123")
                && !all.contains("uvwxyz")
                && !all.contains("Ab3dEf")
                && !all.contains("abcdefghij"),
            "{all}"
        );
        assert_eq!(back["f"], "plain \\nfoo\"bar text");
        assert_eq!(back["g"], "[redacted]");
        assert_eq!(back["h"], "café-[redacted]-42 ok");
    }

    #[test]
    fn url_valued_secrets_mask_their_parts() {
        let r = Redactor::with_values(["http://127.0.0.1:4000/services/T000/B000/hookSecretPart99".to_owned()]);
        assert_eq!(r.mask("posting to /services/T000/B000/hookSecretPart99 failed"), "posting to [redacted] failed");
        assert_eq!(r.mask("unknown hook hookSecretPart99"), "unknown hook [redacted]");
        assert_eq!(r.mask("http://127.0.0.1:4000/services/T000/B000/hookSecretPart99"), "[redacted]");
    }

    #[test]
    fn secret_variable_names() {
        for name in ["GITHUB_TOKEN", "OPS_WEBHOOK_SECRET", "my_api_key", "DB_PASSWORD", "SLACK_WEBHOOK_URL"] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["PATH", "HOME", "KEYBOARD", "TOKENIZERS_PARALLELISM", "SSH_AUTH_SOCK"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
