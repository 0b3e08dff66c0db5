//! Printing URLs without their secrets.
//!
//! Database and SMTP URLs carry passwords; every place that prints a URL (logs, errors, emails,
//! `--help` defaults) goes through [`url`] so a password can never leak by accident.

/// `text` with the password of its URL (if any) replaced by `***`. Text that does not parse as
/// a URL is returned with anything between `://` and the last `@` masked, to be safe.
pub fn url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) => {
            let mut changed =
                parsed.password().is_some() && parsed.set_password(Some("***")).is_ok();
            // The mysql crate also takes `?password=…`.
            if parsed.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let masked = k.eq_ignore_ascii_case("password");
                        (k.into_owned(), if masked { "***".to_owned() } else { v.into_owned() })
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
                changed = true;
            }
            if changed {
                parsed.to_string()
            } else {
                text.to_owned()
            }
        }
        Err(_) => match (text.find("://"), text.rfind('@')) {
            (Some(start), Some(at)) if at > start + 3 => {
                format!("{}***{}", &text[..start + 3], &text[at..])
            }
            _ => text.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn password_is_masked_and_the_rest_kept() {
        assert_eq!(
            url("mysql://monitor:s3cret@db:3306/monitor"),
            "mysql://monitor:***@db:3306/monitor"
        );
        assert_eq!(
            url("smtp://user:s3cret@mail.example.com:587?tls=required"),
            "smtp://user:***@mail.example.com:587?tls=required"
        );
    }

    #[test]
    fn password_parameters_are_masked() {
        assert_eq!(
            url("mysql://monitor@db:3306/monitor?password=s3cret&pool_max=2"),
            "mysql://monitor@db:3306/monitor?password=***&pool_max=2"
        );
    }

    #[test]
    fn urls_without_password_are_unchanged() {
        assert_eq!(url("sqlite://api-monitor.db"), "sqlite://api-monitor.db");
        assert_eq!(url("https://api.qa.fitpay.ninja/health"), "https://api.qa.fitpay.ninja/health");
    }

    #[test]
    fn unparsable_urls_still_hide_credentials() {
        let shown = url("mysql://u:s3cret@[bad");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
