//! Judging what a 200 answer carries — its `Content-Type` and its body — apart from any I/O,
//! so the rules can be tested as plain functions over text and bytes.

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

use std::time::Duration;

use super::{Outcome, Reason};

/// Judges how long a healthy probe took against the target's `slow` limit (`None`: off): a
/// healthy answer that took longer fails with [`Reason::Slow`]; any other outcome is left as
/// it is (a failure stays the failure it was: its own reason says more than its time). The
/// time is the outcome's latency, measured around the whole exchange like every probe's.
pub fn speed_verdict(outcome: Outcome, limit: Option<Duration>) -> Outcome {
    match (outcome, limit) {
        (Outcome::Healthy { latency }, Some(limit)) if latency > limit => {
            Outcome::Failed { reason: Reason::Slow { took: latency, limit }, latency }
        }
        (outcome, _) => outcome,
    }
}

/// Judges the `Content-Type` of a 200: JSON media types (`application/json`, with or without
/// parameters, and structured `application/<name>+json` such as `application/health+json`) pass;
/// anything else fails even if the body happens to parse, because a health endpoint answering
/// `text/html` is usually a proxy's or framework's page, not the API. A missing header is
/// tolerated — small health endpoints often omit it — and the body is judged on its own.
pub fn content_type_verdict(value: Option<&str>) -> Result<(), Reason> {
    let Some(value) = value else { return Ok(()) };
    let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let structured_json = media
        .strip_prefix("application/")
        .and_then(|subtype| subtype.strip_suffix("+json"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    if media == "application/json" || structured_json {
        return Ok(());
    }
    Err(Reason::ContentType(media.chars().take(64).collect()))
}

/// Judges a complete HTTP 200 body: healthy only if it is UTF-8 JSON with `"status": "OK"`,
/// and only one `status` at the top level (serde_json would silently keep the last of two, so
/// `{"status":"DOWN","status":"OK"}` would pass; an ambiguous body is a failure).
pub fn verdict(body: &[u8]) -> Result<(), Reason> {
    let text = std::str::from_utf8(body).map_err(|_| Reason::BodyNotUtf8)?;
    let top: TopLevel = serde_json::from_str(text).map_err(|_| Reason::BodyNotJson)?;
    if top.repeated {
        return Err(Reason::DuplicateStatusField);
    }
    match top.status {
        None => Err(Reason::NoStatusField),
        Some(serde_json::Value::String(s)) if s == "OK" => Ok(()),
        Some(serde_json::Value::String(s)) => Err(Reason::Status(s.chars().take(64).collect())),
        Some(other) => Err(Reason::StatusNotString(json_kind(&other))),
    }
}

/// What the verdict needs of a JSON document, read in one pass: the top-level `status` value
/// and whether that key came more than once. Everything else is checked for syntax only, never
/// kept. A document that is not an object has no `status`.
#[derive(Debug, Default)]
struct TopLevel {
    status: Option<serde_json::Value>,
    repeated: bool,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

/// Visits the top-level value: an object is walked key by key; any other value is skipped
/// (through [`IgnoredAny`], which still checks its syntax) and has no `status`.
struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut top = TopLevel::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Status => {
                    let value = map.next_value()?;
                    top.repeated |= top.status.replace(value).is_some();
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TopLevel, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| TopLevel::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }

    fn visit_unit<E>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::default())
    }
}

/// A top-level key: `status` (after JSON unescaping, so `"st\u0061tus"` is one too) or not.
enum Key {
    Status,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(if key == "status" { Key::Status } else { Key::Other })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_answer_over_the_slow_limit_fails_as_slow() {
        let ms = Duration::from_millis;
        let healthy = |t| Outcome::Healthy { latency: ms(t) };
        let failed = |reason: Reason, t| Outcome::Failed { reason, latency: ms(t) };
        let slow = |t, limit| failed(Reason::Slow { took: ms(t), limit: ms(limit) }, t);
        let refused = || Reason::Refused;
        let proxy = || Reason::ProxyRefused { proxy: "p".into() };
        // (outcome, limit, expected, why)
        let cases = [
            (healthy(2_310), Some(2_000), slow(2_310, 2_000), "over the limit: slow"),
            (healthy(2_001), Some(2_000), slow(2_001, 2_000), "a millisecond over is over"),
            (healthy(2_000), Some(2_000), healthy(2_000), "exactly the limit is not slower"),
            (healthy(1_999), Some(2_000), healthy(1_999), "under the limit: healthy"),
            (healthy(60_000), None, healthy(60_000), "no limit: off, today's behaviour"),
            (failed(refused(), 3_000), Some(2_000), failed(refused(), 3_000), "a failure stays"),
            (
                Outcome::Blind { reason: proxy(), latency: ms(3_000) },
                Some(2_000),
                Outcome::Blind { reason: proxy(), latency: ms(3_000) },
                "blind stays blind: the API was not seen",
            ),
        ];
        for (outcome, limit, expected, why) in cases {
            let judged = speed_verdict(outcome.clone(), limit.map(ms));
            assert_eq!(judged, expected, "{why}: {outcome:?} with {limit:?}");
        }
        let judged = speed_verdict(healthy(2_310), Some(ms(2_000)));
        assert_eq!(judged.reason().map(ToString::to_string).as_deref(), Some("slow: 2.31 s > 2s"));
        assert_eq!(judged.latency(), ms(2_310), "the latency is kept as measured");
    }

    #[test]
    fn content_type_rules() {
        let expected =
            |shown: &str| Err(format!("content type {shown:?}, expected application/json"));
        let judge = |value| content_type_verdict(value).map_err(|r| r.to_string());
        assert_eq!(judge(None), Ok(()), "missing: the body is judged");
        assert_eq!(judge(Some(" application/json ;charset=UTF-8")), Ok(()));
        assert_eq!(judge(Some("application/problem+json")), Ok(()));
        assert_eq!(judge(Some("application/+json")), expected("application/+json"));
        assert_eq!(judge(Some("text/json")), expected("text/json"));
        assert_eq!(judge(Some("")), expected(""));
        let hostile = format!("text/\"x\r\n{}", "y".repeat(500));
        let reason = judge(Some(&hostile)).unwrap_err();
        assert!(reason.len() < 120 && !reason.contains('\n'), "clipped and escaped: {reason}");
    }

    #[test]
    fn verdict_rejects_non_utf8() {
        assert_eq!(verdict(b"\x1f\x8b\x08\x00"), Err(Reason::BodyNotUtf8));
        assert_eq!(verdict(b"\xff\xfe{}"), Err(Reason::BodyNotUtf8));
        assert_eq!(verdict(br#"{"status":"OK"}"#), Ok(()));
    }

    #[test]
    fn status_field_rules() {
        let text = |body: &[u8]| verdict(body).map_err(|r| r.to_string());
        assert_eq!(text(br#"{"status":"DEGRADED"}"#), Err("status \"DEGRADED\"".into()));
        assert_eq!(text(br#"{"healthy":true}"#), Err("no \"status\" field in JSON".into()));
        assert_eq!(text(br#"{"status":[]}"#), Err("\"status\" is not a string: an array".into()));
        assert_eq!(text(b"<html>"), Err("body is not JSON".into()));
    }

    #[test]
    fn a_repeated_top_level_status_is_ambiguous() {
        let text = |body: &str| verdict(body.as_bytes()).map_err(|r| r.to_string());
        let duplicate = Err("duplicate \"status\" field in JSON".to_string());
        let cases = [
            (r#"{"status":"DOWN","status":"OK"}"#, duplicate.clone()),
            (r#"{"status":"OK","status":"OK"}"#, duplicate.clone()),
            (r#"{"status":"OK","x":1,"st\u0061tus":"OK"}"#, duplicate.clone()),
            (r#"{"status":"OK","version":"1.2","version":"1.3"}"#, Ok(())),
            (r#"{"status":"OK","detail":{"status":"DOWN","status":"OK"}}"#, Ok(())),
            (r#"{"status":"OK","checks":[{"status":"DOWN"},{"status":"OK"}]}"#, Ok(())),
            (r#"{"status":"DOWN","status":"OK"} x"#, Err("body is not JSON".into())),
            (r#"{"status":"DOWN","status":"OK""#, Err("body is not JSON".into())),
            (r#"[{"status":"OK"}]"#, Err("no \"status\" field in JSON".into())),
            (r#""OK""#, Err("no \"status\" field in JSON".into())),
            ("null", Err("no \"status\" field in JSON".into())),
            ("12.5", Err("no \"status\" field in JSON".into())),
            (r#"{"status":{"status":"OK"}}"#, Err("\"status\" is not a string: an object".into())),
        ];
        for (body, expected) in cases {
            assert_eq!(text(body), expected, "{body}");
        }
    }
}
