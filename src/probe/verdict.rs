//! Judging what a 200 answer carries — its `Content-Type` and its body — apart from any I/O,
//! so the rules can be tested as plain functions over text and bytes.

use super::Reason;

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

/// Judges a complete HTTP 200 body: healthy only if it is UTF-8 JSON with `"status": "OK"`.
pub fn verdict(body: &[u8]) -> Result<(), Reason> {
    let json: serde_json::Value = match std::str::from_utf8(body) {
        Err(_) => return Err(Reason::BodyNotUtf8),
        Ok(text) => serde_json::from_str(text).map_err(|_| Reason::BodyNotJson)?,
    };
    match json.get("status") {
        None => Err(Reason::NoStatusField),
        Some(serde_json::Value::String(s)) if s == "OK" => Ok(()),
        Some(serde_json::Value::String(s)) => Err(Reason::Status(s.chars().take(64).collect())),
        Some(other) => Err(Reason::StatusNotString(json_kind(other))),
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
}
