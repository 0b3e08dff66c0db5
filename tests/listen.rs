//! `--listen`: the metrics registry, the status page and the HTTP server, through the library.
//!
//! `/metrics` is checked by a strict parser of the Prometheus text exposition format 0.0.4
//! written here (every line, names, label syntax and escapes, family grouping, histogram
//! consistency), so the check runs everywhere; where `promtool` is installed, it checks the
//! same render too. The server is exercised over real loopback sockets with plain
//! `std::net::TcpStream` requests, waiting on events with generous deadlines, never sleeps.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use api_monitor::detector::{Health, Transition};
use api_monitor::history::Change;
use api_monitor::probe::{Outcome, Phase, Reason};
use api_monitor::timestamp::Timestamp;
use api_monitor::web::metrics::Registry;
use api_monitor::web::server::{self, ServeError, Sources};
use api_monitor::web::status_page::{self, StatusRow};

// ---------------------------------------------------------------------------------------------
// A strict parser of the text exposition format 0.0.4.
// ---------------------------------------------------------------------------------------------

/// One metric family as parsed: its `# TYPE`, `# HELP` and samples, in order.
#[derive(Debug)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
struct Sample {
    /// The sample's own name (`x_bucket`, `x_sum`… for a histogram `x`).
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: families by name, in order of appearance.
#[derive(Debug)]
struct Exposition {
    families: Vec<(String, Family)>,
}

impl Exposition {
    fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.families
            .iter()
            .flat_map(|(_, f)| &f.samples)
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A float as Go's `ParseFloat` reads it in this format, including `NaN` and `±Inf`.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if text.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
            text.parse::<f64>().map_err(|e| format!("bad value {text:?}: {e}"))
        }
        _ => Err(format!("bad value {text:?}")),
    }
}

/// Parses `{a="x",b="y"}` at the start of `text`; returns the labels and the rest.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in label value: {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} given twice"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} after a label, got {rest:?}"));
        }
    }
}

/// The family a sample named `name` belongs to, given the declared `kind` of `family`.
fn belongs(name: &str, family: &str, kind: &str) -> bool {
    match kind {
        "histogram" => [
            family.to_owned() + "_bucket",
            family.to_owned() + "_sum",
            family.to_owned() + "_count",
        ]
        .contains(&name.to_owned()),
        "summary" => {
            name == family || name == format!("{family}_sum") || name == format!("{family}_count")
        }
        _ => name == family,
    }
}

/// Parses and validates a whole exposition; the error names the first offending line.
///
/// Stricter than Prometheus where our renders should be: every family must have `# HELP` and
/// `# TYPE` before its samples, and no line may be empty.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".into());
    }
    let mut families: Vec<(String, Family)> = Vec::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !is_metric_name(name) {
                        return Err(at(format!("bad metric name {name:?}")));
                    }
                    if !helps.insert(name.to_owned()) {
                        return Err(at(format!("second HELP for {name}")));
                    }
                    let help = help.unwrap_or("");
                    if help.is_empty() {
                        return Err(at("empty HELP".into()));
                    }
                    let mut escaped = false;
                    for c in help.chars() {
                        if escaped && c != '\\' && c != 'n' {
                            return Err(at(format!("bad escape \\{c} in HELP")));
                        }
                        escaped = !escaped && c == '\\';
                    }
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_metric_name(name) {
                        return Err(at(format!("bad metric name {name:?}")));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("bad type {kind:?}")));
                    }
                    if families.iter().any(|(n, _)| n == name) {
                        return Err(at(format!("second TYPE for {name}")));
                    }
                    if !helps.contains(name) {
                        return Err(at(format!("TYPE of {name} without HELP before it")));
                    }
                    families.push((
                        name.to_owned(),
                        Family { kind: kind.to_owned(), samples: Vec::new() },
                    ));
                    current = Some(name.to_owned());
                }
                (Some("TYPE"), ..) => return Err(at("TYPE without a type".into())),
                _ => {} // any other comment
            }
            continue;
        }
        // A sample: name, optional labels, value, optional timestamp.
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("sample without value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields =
            rest.strip_prefix(' ').ok_or_else(|| at("no space before value".into()))?.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<i64>().map_err(|e| at(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family_name = current.clone().ok_or_else(|| at("sample before any TYPE".into()))?;
        let family = &mut families.last_mut().ok_or_else(|| at("no family".into()))?.1;
        if !belongs(name, &family_name, &family.kind) {
            return Err(at(format!("sample {name} outside its family (current: {family_name})")));
        }
        if family.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(at("a counter must be a non-negative number".into()));
        }
        if name.ends_with("_bucket") && family.kind == "histogram" && !labels.contains_key("le") {
            return Err(at("bucket without le".into()));
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        family.samples.push(Sample { name: name.to_owned(), labels, value });
    }
    for (name, family) in &families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(Exposition { families })
}

/// Per series of a histogram: `le` ascending and ending in `+Inf`, cumulative counts never
/// decreasing, `+Inf` equal to `_count`, and a `_sum`.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut by_series: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
    for sample in &family.samples {
        let key = sample
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        by_series.entry(key).or_default().push(sample);
    }
    for (labels, samples) in by_series {
        let buckets: Vec<&&Sample> =
            samples.iter().filter(|s| s.name.ends_with("_bucket")).collect();
        let mut previous: Option<(f64, f64)> = None;
        for bucket in &buckets {
            let le =
                parse_value(&bucket.labels["le"]).map_err(|e| format!("{name}{labels:?}: {e}"))?;
            if let Some((previous_le, previous_count)) = previous {
                if le <= previous_le {
                    return Err(format!("{name}{labels:?}: le {le} not above {previous_le}"));
                }
                if bucket.value < previous_count {
                    return Err(format!("{name}{labels:?}: bucket le={le} decreases"));
                }
            }
            previous = Some((le, bucket.value));
        }
        let Some((last_le, infinite)) = previous else {
            return Err(format!("{name}{labels:?}: no buckets"));
        };
        if last_le != f64::INFINITY {
            return Err(format!("{name}{labels:?}: no +Inf bucket"));
        }
        let count = samples.iter().find(|s| s.name.ends_with("_count")).map(|s| s.value);
        if count != Some(infinite) {
            return Err(format!("{name}{labels:?}: +Inf bucket {infinite} but _count {count:?}"));
        }
        if !samples.iter().any(|s| s.name.ends_with("_sum")) {
            return Err(format!("{name}{labels:?}: no _sum"));
        }
    }
    Ok(())
}

#[test]
fn the_parser_accepts_valid_text_and_rejects_each_kind_of_mistake() {
    let valid = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n\
                 # HELP h Durations.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\n\
                 h_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
    let parsed = parse_exposition(valid).expect("valid text");
    assert_eq!(parsed.value("a_total", &[("x", "q\"\\\n")]), Some(1.0), "escapes decoded");

    let histogram = |body: &str| format!("# HELP h D.\n# TYPE h histogram\n{body}");
    let invalid: Vec<(String, &str)> = vec![
        ("# HELP 1a X.\n# TYPE 1a gauge\n1a 1\n".into(), "name starting with a digit"),
        ("# HELP a X.\n# TYPE a gauge\na{x=\"1\" 1\n".into(), "unclosed labels"),
        ("# HELP a X.\n# TYPE a gauge\na{x=\"a\"b\"} 1\n".into(), "unescaped quote"),
        ("# HELP a X.\n# TYPE a gauge\na{x=\"\\t\"} 1\n".into(), "unknown escape"),
        ("# HELP a X.\n# TYPE a gauge\na{__x=\"1\"} 1\n".into(), "reserved label name"),
        ("# HELP a X.\n# TYPE a gauge\na one\n".into(), "value not a number"),
        ("# HELP a X.\n# TYPE a gauge\na 1\na 2\n".into(), "duplicate series"),
        ("a 1\n".into(), "sample without TYPE"),
        ("# TYPE a gauge\na 1\n".into(), "TYPE without HELP"),
        ("# HELP a X.\n# TYPE a gauge\n# HELP b X.\n# TYPE b gauge\na 1\n".into(), "family split"),
        ("# HELP a X.\n# TYPE a counter\na -1\n".into(), "negative counter"),
        ("# HELP a X.\n# TYPE a gauge\na 1".into(), "no final line feed"),
        ("# HELP a X.\n# TYPE a gauge\n\na 1\n".into(), "empty line"),
        ("# HELP a X.\n# TYPE a meter\na 1\n".into(), "unknown type"),
        (histogram("h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"), "bucket decreases"),
        (histogram("h_bucket{le=\"1\"} 1\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"), "le out of order"),
        (histogram("h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"), "no +Inf"),
        (histogram("h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"), "+Inf differs from _count"),
        (histogram("h_bucket{le=\"+Inf\"} 2\nh_count 2\n"), "no _sum"),
        (histogram("h_bucket 2\nh_sum 1\nh_count 2\n"), "bucket without le"),
    ];
    for (text, why) in invalid {
        assert!(parse_exposition(&text).is_err(), "must reject: {why}\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Renders of the registry.
// ---------------------------------------------------------------------------------------------

const URL: &str = "http://api.example/health";
const DIRECT: &str = "direct";

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn transition(from: Option<Health>, to: Health, since_ms: i64) -> Transition {
    Transition { from, to, since: Timestamp::from_millis(since_ms), reasons: Vec::new() }
}

/// Parses the current render or fails the test with it.
fn parsed(registry: &Registry) -> Exposition {
    let text = registry.render();
    parse_exposition(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}

#[test]
fn a_scripted_outage_renders_valid_exposition_with_the_right_values_at_every_step() {
    let registry = Registry::new();
    let start = Instant::now();
    let watch = registry.register(URL, DIRECT, ms(1_000), ms(2_000), start);
    let other = registry.register(URL, "eu", ms(1_000), ms(2_000), start);
    let labels = [("target", URL), ("region", DIRECT)];
    let with = |extra: (&'static str, &'static str)| [labels[0], labels[1], extra];

    let m = parsed(&registry);
    assert_eq!(m.value("api_monitor_up", &labels), None, "no state yet: absent");
    assert_eq!(m.value("api_monitor_outages_total", &labels), Some(0.0));
    assert_eq!(m.value("api_monitor_notifications_pending", &[]), Some(0.0));
    assert_eq!(m.family("api_monitor_probes_total").map(|f| f.kind.as_str()), Some("counter"));
    assert_eq!(
        m.family("api_monitor_probe_duration_seconds").map(|f| f.kind.as_str()),
        Some("histogram")
    );

    // Up, then two failures settle an outage.
    watch.probe(&Outcome::Healthy { latency: ms(4) }, start);
    watch.transition(&transition(None, Health::Up, 1_000_000));
    other.probe(&Outcome::Healthy { latency: ms(30) }, start);
    let fail = Outcome::Failed { reason: Reason::HttpStatus(503), latency: ms(120) };
    watch.probe(&fail, start + ms(1_000));
    let m = parsed(&registry);
    assert_eq!(m.value("api_monitor_up", &labels), Some(1.0), "one failure is not an outage");
    assert_eq!(m.value("api_monitor_consecutive_failures", &labels), Some(1.0));
    watch.probe(&fail, start + ms(2_000));
    watch.transition(&transition(Some(Health::Up), Health::Down, 1_001_000));
    registry.set_pending_notifications(1);
    let m = parsed(&registry);
    assert_eq!(m.value("api_monitor_up", &labels), Some(0.0), "down");
    assert_eq!(m.value("api_monitor_outages_total", &labels), Some(1.0), "one outage");
    assert_eq!(m.value("api_monitor_consecutive_failures", &labels), Some(2.0));
    assert_eq!(m.value("api_monitor_last_transition_timestamp_seconds", &labels), Some(1_001.0));
    assert_eq!(m.value("api_monitor_notifications_pending", &[]), Some(1.0), "outage mail queued");
    assert_eq!(m.value("api_monitor_up", &[("target", URL), ("region", "eu")]), None, "eu unknown");

    // Recovery.
    watch.probe(&Outcome::Healthy { latency: ms(6) }, start + ms(3_000));
    watch.transition(&transition(Some(Health::Down), Health::Up, 1_003_000));
    registry.set_pending_notifications(0);
    let m = parsed(&registry);
    assert_eq!(m.value("api_monitor_up", &labels), Some(1.0), "up again");
    assert_eq!(m.value("api_monitor_outages_total", &labels), Some(1.0), "still one outage");
    assert_eq!(m.value("api_monitor_consecutive_failures", &labels), Some(0.0), "reset");
    assert_eq!(m.value("api_monitor_last_transition_timestamp_seconds", &labels), Some(1_003.0));
    assert_eq!(m.value("api_monitor_probes_total", &with(("result", "ok"))), Some(2.0));
    assert_eq!(m.value("api_monitor_probes_total", &with(("result", "failed"))), Some(2.0));
    assert_eq!(m.value("api_monitor_probes_total", &with(("result", "blind"))), Some(0.0));
    let histogram = "api_monitor_probe_duration_seconds";
    assert_eq!(m.value(&format!("{histogram}_count"), &labels), Some(4.0), "every probe");
    assert_eq!(m.value(&format!("{histogram}_bucket"), &with(("le", "0.005"))), Some(1.0));
    assert_eq!(m.value(&format!("{histogram}_bucket"), &with(("le", "0.1"))), Some(2.0));
    assert_eq!(m.value(&format!("{histogram}_bucket"), &with(("le", "0.25"))), Some(4.0));
    let sum = m.value(&format!("{histogram}_sum"), &labels).expect("a sum");
    assert!((sum - 0.25).abs() < 1e-9, "4 + 120 + 120 + 6 ms = 0.25 s, got {sum}");
}

#[test]
fn hostile_label_values_survive_the_round_trip() {
    let registry = Registry::new();
    let hostile = "http://x/?a=\"b\"\\c\nd} 1\n# TYPE evil gauge";
    let watch = registry.register(hostile, "r\"\\", ms(1_000), ms(1_000), Instant::now());
    watch.transition(&transition(None, Health::Down, 0));
    let m = parsed(&registry);
    assert_eq!(m.value("api_monitor_up", &[("target", hostile), ("region", "r\"\\")]), Some(0.0));
    assert!(m.family("evil").is_none(), "nothing injected");
}

#[test]
fn promtool_accepts_the_exposition_when_it_is_installed() {
    let registry = Registry::new();
    let start = Instant::now();
    let watch = registry.register(URL, DIRECT, ms(1_000), ms(1_000), start);
    watch.probe(
        &Outcome::Failed {
            reason: Reason::Timeout { after: ms(1_000), phase: Phase::Head },
            latency: ms(1_000),
        },
        start,
    );
    watch.transition(&transition(None, Health::Down, 1_795_000_000_123));
    registry.register("b\"\\\n", "eu", ms(1_000), ms(1_000), start);
    let text = registry.render();
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: promtool is not installed (the parser test still ran)");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed:\n{report}\n{text}");
    assert!(report.trim().is_empty(), "promtool lint findings:\n{report}");
}

// ---------------------------------------------------------------------------------------------
// The server over loopback.
// ---------------------------------------------------------------------------------------------

/// A response as read from the socket.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request (so the server closes the connection and never chunks the body).
fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Response { status, headers, body: body.to_owned() }
}

fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path)
}

const DAY_MS: i64 = 86_400_000;

/// A status source over a fixed history: one target up, one down since an hour ago.
fn status_source(now: Timestamp) -> server::StatusSource {
    let rows = vec![
        StatusRow {
            target: URL.into(),
            region: DIRECT.into(),
            changes: vec![Change {
                at: Timestamp::from_millis(now.millis() - 100 * DAY_MS),
                health: Health::Up,
            }],
            latency: Default::default(),
        },
        StatusRow {
            target: "http://other.example/health".into(),
            region: "eu".into(),
            changes: vec![
                Change {
                    at: Timestamp::from_millis(now.millis() - 3 * DAY_MS),
                    health: Health::Up,
                },
                Change {
                    at: Timestamp::from_millis(now.millis() - 3_600_000),
                    health: Health::Down,
                },
            ],
            latency: Default::default(),
        },
    ];
    Arc::new(move || Ok(status_page::render(&rows, now)))
}

#[test]
fn the_server_answers_metrics_health_status_and_refuses_the_rest() {
    let registry = Arc::new(Registry::new());
    let watch =
        registry.register(URL, DIRECT, Duration::from_secs(3_600), ms(1_000), Instant::now());
    watch.probe(&Outcome::Healthy { latency: ms(12) }, Instant::now());
    watch.transition(&transition(None, Health::Up, 1_000));
    let now = Timestamp::from_millis(20_000 * DAY_MS);
    let sources = Sources { registry: Arc::clone(&registry), status: status_source(now) };
    let server = server::serve("127.0.0.1:0", sources).expect("bind a free loopback port");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "the bound address: {addr}");

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let m = parse_exposition(&metrics.body).unwrap_or_else(|e| panic!("{e}\n{}", metrics.body));
    assert_eq!(m.value("api_monitor_up", &[("target", URL), ("region", DIRECT)]), Some(1.0));

    let health = get(addr, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(page
        .header("Content-Security-Policy")
        .is_some_and(|p| p.contains("default-src 'none'")));
    assert_eq!(page.body.matches("<tr class=\"target\">").count(), 2, "one row per pair");
    assert_eq!(page.body.matches("<rect ").count(), 180, "90 cells per row");
    assert!(page.body.contains("1 of 2 down."), "the summary");

    assert_eq!(get(addr, "/nope").status, 404);
    let post = request(addr, "POST", "/metrics");
    assert_eq!(post.status, 405, "read-only");
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    let head = request(addr, "HEAD", "/healthz");
    assert_eq!((head.status, head.body.as_str()), (200, ""), "HEAD: no body");

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the port is still open after stop");
        std::thread::yield_now();
    }
}

#[test]
fn healthz_turns_503_when_a_loop_stalls() {
    let registry = Arc::new(Registry::new());
    registry.register("steady", DIRECT, Duration::from_secs(3_600), ms(1_000), Instant::now());
    let sources =
        Sources { registry: Arc::clone(&registry), status: Arc::new(|| Ok(String::new())) };
    let server = server::serve("127.0.0.1:0", sources).expect("bind");
    let addr = server.local_addr();
    assert_eq!(get(addr, "/healthz").status, 200, "an hourly loop is not due yet");

    // A loop that should probe every millisecond but never does: stuck after 3 ms.
    registry.register("stuck", "eu", ms(1), Duration::ZERO, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let health = get(addr, "/healthz");
        if health.status != 200 || Instant::now() > deadline {
            break health;
        }
    };
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(
        health.body.starts_with("probe loop stuck: target=stuck region=eu no probe for "),
        "names the stuck loop: {}",
        health.body
    );
    assert!(!health.body.contains("steady"), "and only it: {}", health.body);
    server.stop();
}

/// Lets status renders proceed once opened.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().expect("gate");
        while !*open {
            open = self.opened.wait(open).expect("gate");
        }
    }

    fn open(&self) {
        *self.open.lock().expect("gate") = true;
        self.opened.notify_all();
    }
}

#[test]
fn slow_status_pages_do_not_hold_up_metrics() {
    let gate = Arc::new(Gate::default());
    let (entered, renders) = mpsc::channel::<()>();
    let entered = Mutex::new(entered);
    let status: server::StatusSource = {
        let gate = Arc::clone(&gate);
        Arc::new(move || {
            entered.lock().expect("sender").send(()).expect("test listens");
            gate.wait();
            Ok("<p>slow</p>".to_owned())
        })
    };
    let registry = Arc::new(Registry::new());
    let server = server::serve("127.0.0.1:0", Sources { registry, status }).expect("bind");
    let addr = server.local_addr();

    let slow: Vec<_> =
        (0..server::STATUS_RENDERS).map(|_| std::thread::spawn(move || get(addr, "/"))).collect();
    for _ in 0..server::STATUS_RENDERS {
        renders.recv_timeout(Duration::from_secs(30)).expect("a render started");
    }
    // Every render place is taken and stuck: metrics and health still answer.
    assert_eq!(get(addr, "/metrics").status, 200, "metrics while pages render");
    assert_eq!(get(addr, "/healthz").status, 200, "health while pages render");
    let busy = get(addr, "/");
    assert_eq!(busy.status, 503, "a third page waits for no one: {}", busy.body);
    assert_eq!(busy.header("Retry-After"), Some("5"));

    gate.open();
    for page in slow {
        let page = page.join().expect("client thread");
        assert_eq!((page.status, page.body.as_str()), (200, "<p>slow</p>"));
    }
    server.stop();
}

#[test]
fn binding_failures_are_errors_for_the_caller() {
    let sources =
        || Sources { registry: Arc::new(Registry::new()), status: Arc::new(|| Ok(String::new())) };
    let first = server::serve("127.0.0.1:0", sources()).expect("bind");
    let taken = first.local_addr().to_string();
    match server::serve(&taken, sources()) {
        Err(ServeError::Bind { addr, .. }) => assert_eq!(addr, taken),
        Err(e) => panic!("expected a bind error, got {e}"),
        Ok(_) => panic!("bound {taken} twice"),
    }
    let err = server::serve("not an address", sources()).err().expect("malformed address");
    assert!(err.to_string().starts_with("cannot bind not an address: "), "{err}");
    first.stop();
}

// ---------------------------------------------------------------------------------------------
// Through the real binary: `--listen` while a scripted outage runs.
// ---------------------------------------------------------------------------------------------

mod support;

#[test]
fn the_monitor_serves_metrics_that_follow_a_scripted_outage() {
    let api = support::FakeApi::start(&[]);
    let url = api.health_url();
    let dir = support::temp_dir("listen");
    let db = format!("sqlite://{}", dir.join("monitor.db").display());
    let mon = support::monitor(&[
        "--url",
        &url,
        "--db",
        &db,
        "--interval",
        "200ms",
        "--timeout",
        "2s",
        "--listen",
        "127.0.0.1:0",
    ]);
    let line = mon.wait_for_line("serving http://");
    let addr: SocketAddr = line
        .split("serving http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let labels = [("target", url.as_str()), ("region", "direct")];
    let scrape = || {
        let response = get(addr, "/metrics");
        assert_eq!(response.status, 200);
        parse_exposition(&response.body).unwrap_or_else(|e| panic!("{e}\n{}", response.body))
    };

    mon.wait_for_line("UP target=");
    let m = scrape();
    assert_eq!(m.value("api_monitor_up", &labels), Some(1.0), "up after the first settled state");
    assert_eq!(m.value("api_monitor_outages_total", &labels), Some(0.0));
    assert_eq!(get(addr, "/healthz").status, 200);

    api.set_mode("down");
    mon.wait_for_line("OUTAGE target=");
    let m = scrape();
    assert_eq!(m.value("api_monitor_up", &labels), Some(0.0));
    assert_eq!(m.value("api_monitor_outages_total", &labels), Some(1.0));
    assert!(m.value("api_monitor_consecutive_failures", &labels).unwrap() >= 2.0);
    let failed = [("target", url.as_str()), ("region", "direct"), ("result", "failed")];
    assert!(m.value("api_monitor_probes_total", &failed).unwrap() >= 2.0);

    api.set_mode("ok");
    mon.wait_for_line("RECOVERED target=");
    let m = scrape();
    assert_eq!(m.value("api_monitor_up", &labels), Some(1.0));
    assert_eq!(m.value("api_monitor_outages_total", &labels), Some(1.0), "counted once");
    assert_eq!(m.value("api_monitor_consecutive_failures", &labels), Some(0.0));

    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&url), "the status page lists the target");
    assert!(page.body.contains("<svg"), "with its 90-day bar");
}
