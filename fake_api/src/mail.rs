//! Renders a received e-mail as a readable block for `mail-sink`'s terminal output, so a demo
//! shows the alert's subject and text instead of raw MIME.
//!
//! Pure. It understands just what api-monitor's mailer (lettre) sends: headers with RFC 2047
//! encoded words, `multipart/alternative` (possibly nested in another multipart) with a
//! `text/plain` part in 7bit, 8bit, quoted-printable or base64, UTF-8 or Latin-1. Anything it
//! does not understand is shown raw rather than dropped.

use base64::Engine as _;

/// The SMTP envelope of one message (not its headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub to: Vec<String>,
}

/// Multipart nesting deeper than this is shown raw; real mail nests two or three levels.
const MAX_DEPTH: usize = 8;

/// The block printed for message number `number`: a separator line, envelope `From:`/`To:`,
/// the `Subject:` header, a blank line and the text.
pub fn render(number: u64, envelope: &Envelope, data: &[u8]) -> String {
    let message = String::from_utf8_lossy(data);
    let top = Part::parse(&message);
    let subject = top.header("subject").map_or_else(|| "(none)".to_owned(), decode_words);
    let text = plain_text(&top, 0).unwrap_or_else(|| {
        format!("(no text/plain part; raw message follows)\n{}", normalize(&message))
    });
    let rule = "=".repeat(24);
    format!(
        "{rule} message {number} {rule}\nFrom: {}\nTo: {}\nSubject: {subject}\n\n{}\n",
        envelope.from,
        envelope.to.join(", "),
        text.trim_end()
    )
}

/// A message or MIME part: unfolded headers and the raw body.
struct Part<'a> {
    headers: Vec<(String, String)>,
    body: &'a str,
}

impl<'a> Part<'a> {
    /// Splits at the first blank line; continuation lines are unfolded into their header.
    fn parse(text: &'a str) -> Part<'a> {
        let (head, body) = split_head(text);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Part { headers, body }
    }

    /// The first header called `name` (lower case).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `Content-Type` split into the lower-case MIME type and its parameters.
    fn content_type(&self) -> (String, Vec<(String, String)>) {
        let value = self.header("content-type").unwrap_or("text/plain");
        let mut pieces = value.split(';');
        let mime = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
        let params = pieces
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_owned()))
            .collect();
        (mime, params)
    }

    /// The body with its transfer encoding undone, in its charset, line ends normalised.
    fn decoded_body(&self, charset: Option<&str>) -> String {
        let encoding = self.header("content-transfer-encoding").unwrap_or("7bit");
        let bytes = match encoding.trim().to_ascii_lowercase().as_str() {
            "quoted-printable" => {
                quoted_printable::decode(self.body.as_bytes(), quoted_printable::ParseMode::Robust)
                    .ok()
            }
            "base64" => {
                let compact: String = self.body.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD.decode(compact).ok()
            }
            _ => None,
        };
        match bytes {
            Some(bytes) => normalize(&to_text(&bytes, charset)),
            None => normalize(self.body),
        }
    }
}

/// Head and body of a part; the blank line may be CRLF or bare LF.
fn split_head(text: &str) -> (&str, &str) {
    if text.starts_with("\r\n") || text.starts_with('\n') {
        return ("", text.trim_start_matches(['\r', '\n']));
    }
    let crlf = text.find("\r\n\r\n").map(|i| (i, i + 4));
    let lf = text.find("\n\n").map(|i| (i, i + 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match split {
        Some((head_end, body_start)) => (&text[..head_end], &text[body_start..]),
        None => (text, ""),
    }
}

/// The first `text/plain` part, searching nested multiparts depth first.
fn plain_text(part: &Part<'_>, depth: usize) -> Option<String> {
    let (mime, params) = part.content_type();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if mime.starts_with("multipart/") {
        if depth >= MAX_DEPTH {
            return None;
        }
        let boundary = param("boundary")?;
        return split_multipart(part.body, boundary)
            .iter()
            .find_map(|child| plain_text(&Part::parse(child), depth + 1));
    }
    (mime == "text/plain").then(|| part.decoded_body(param("charset")))
}

/// The parts between `--boundary` delimiter lines, each with its original line ends. An
/// unterminated last part (no `--boundary--`) is kept.
fn split_multipart(body: &str, boundary: &str) -> Vec<String> {
    let open = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split('\n') {
        let delimiter = line.trim_end();
        if delimiter == open || delimiter == close {
            if let Some(lines) = current.take() {
                parts.push(lines.join("\n"));
            }
            if delimiter == close {
                return parts;
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    parts.extend(current.map(|lines| lines.join("\n")));
    parts
}

/// Decodes RFC 2047 encoded words (`=?utf-8?q?...?=`, `=?utf-8?b?...?=`) in a header value;
/// whitespace between two adjacent encoded words is dropped, as the RFC says.
pub fn decode_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        match encoded_word(candidate) {
            Some((text, used)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &candidate[used..];
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes one encoded word at the start of `s`; returns the text and the bytes consumed.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, rest) = inner.split_once('?')?;
    let (encoding, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let encoded = &rest[..end];
    if encoded.contains(char::is_whitespace) || charset.contains(char::is_whitespace) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => base64::engine::general_purpose::STANDARD.decode(encoded).ok()?,
        "Q" | "q" => {
            quoted_printable::decode(encoded.replace('_', " "), quoted_printable::ParseMode::Robust)
                .ok()?
        }
        _ => return None,
    };
    let used = s.len() - rest.len() + end + "?=".len();
    // An RFC 2231 language suffix ("utf-8*en") does not change the charset.
    let charset = charset.split('*').next().unwrap_or(charset);
    Some((to_text(&bytes, Some(charset)), used))
}

/// Bytes in `charset` as text: Latin-1 maps byte to char, everything else is read as UTF-8.
fn to_text(bytes: &[u8], charset: Option<&str>) -> String {
    let latin1 = charset.is_some_and(|c| {
        ["iso-8859-1", "latin1", "iso8859-1"].iter().any(|l| c.trim().eq_ignore_ascii_case(l))
    });
    if latin1 {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            from: "monitor@example.com".into(),
            to: vec!["support@example.com".into(), "ops@example.com".into()],
        }
    }

    /// Roughly what lettre sends for `MultiPart::alternative_plain_html`.
    const LETTRE_ALTERNATIVE: &str = "From: monitor@example.com\r\n\
        To: support@example.com\r\n\
        Subject: =?utf-8?b?W0RPV05dIGFwaSDigJQ=?=\r\n =?utf-8?b?IGRvd24=?=\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative;\r\n boundary=\"XyZ123\"\r\n\
        \r\n\
        --XyZ123\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        Target https://api.example.com/health is DOWN since 12:00 =E2=80=94 a very lo=\r\n\
        ng line.\r\n\
        Reason: HTTP 503\r\n\
        --XyZ123\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        \r\n\
        <p>html</p>\r\n\
        --XyZ123--\r\n";

    #[test]
    fn renders_lettre_alternative_with_quoted_printable_text() {
        let block = render(1, &envelope(), LETTRE_ALTERNATIVE.as_bytes());
        let rule = "=".repeat(24);
        assert_eq!(
            block,
            format!(
                "{rule} message 1 {rule}\n\
                 From: monitor@example.com\n\
                 To: support@example.com, ops@example.com\n\
                 Subject: [DOWN] api \u{2014} down\n\
                 \n\
                 Target https://api.example.com/health is DOWN since 12:00 \u{2014} a very long \
                 line.\n\
                 Reason: HTTP 503\n"
            )
        );
    }

    #[test]
    fn finds_text_in_nested_multipart_with_base64() {
        let message = "Subject: nested\n\
            Content-Type: multipart/mixed; boundary=outer\n\
            \n\
            --outer\n\
            Content-Type: multipart/alternative; boundary=\"inner\"\n\
            \n\
            --inner\n\
            Content-Type: text/plain; charset=\"utf-8\"\n\
            Content-Transfer-Encoding: base64\n\
            \n\
            UmVjb3ZlcmVkIGFmdGVy\n\
            IDVtLg==\n\
            --inner--\n\
            --outer--\n";
        let block = render(2, &envelope(), message.as_bytes());
        assert!(block.ends_with("Subject: nested\n\nRecovered after 5m.\n"), "{block}");
    }

    #[test]
    fn single_part_plain_text_is_shown_as_is() {
        let message = "Subject: plain\r\n\r\nline one\r\nline two\r\n";
        let block = render(3, &envelope(), message.as_bytes());
        assert!(block.ends_with("Subject: plain\n\nline one\nline two\n"), "{block}");
    }

    #[test]
    fn latin1_parts_are_decoded() {
        let message = "Content-Type: text/plain; charset=iso-8859-1\n\
            Content-Transfer-Encoding: quoted-printable\n\nd=E9j=E0 vu\n";
        assert!(render(4, &envelope(), message.as_bytes()).ends_with("déjà vu\n"));
    }

    #[test]
    fn html_only_mail_falls_back_to_raw() {
        let message = "Subject: x\nContent-Type: text/html\n\n<b>hi</b>\n";
        let block = render(5, &envelope(), message.as_bytes());
        assert!(block.contains("(no text/plain part; raw message follows)"), "{block}");
        assert!(block.contains("<b>hi</b>"), "raw data is kept: {block}");
    }

    #[test]
    fn missing_subject_is_marked() {
        assert!(render(6, &envelope(), b"\r\nbody only\r\n").contains("Subject: (none)\n"));
    }

    #[test]
    fn encoded_words() {
        assert_eq!(decode_words("=?UTF-8?Q?caf=C3=A9_ouvert?="), "café ouvert");
        assert_eq!(decode_words("a =?utf-8?b?w6k=?= =?utf-8?b?w6k=?= b"), "a éé b");
        assert_eq!(decode_words("=?iso-8859-1?q?=E9t=E9?="), "été");
        assert_eq!(decode_words("not =? a word ?= here"), "not =? a word ?= here");
        assert_eq!(decode_words("plain"), "plain");
    }
}
