//! Regions: defined by `--region`/`REGIONS` or the file's `[[region]]`s, named by targets.
//!
//! A region is a proxy, so its URL is checked like the other URLs ([`proxy_url`]); what is
//! particular to regions is their names, which go into the store and email subjects, and the
//! rule that only regions some target names are kept (an unused proxy is never dialled).

use crate::config::error::ConfigError;
use crate::config::file::ConfigFile;
use crate::config::sources::Setting;
use crate::config::urls::proxy_url;
use crate::config::validation::address;
use crate::config::{Region, Target, DIRECT};
use crate::redact;

/// The longest region name: what the `state.region` column comfortably holds, and short
/// enough for an email subject.
pub const MAX_REGION_NAME: usize = 64;

/// A region as defined, with where: `--region` or `region[2]`.
pub(super) struct Defined {
    pub(super) region: Region,
    pub(super) at: String,
}

/// A target's own `regions` list, checked against the defined regions.
pub(super) fn named_regions(
    key: &str,
    names: &[Setting],
    defined: &[Defined],
    regions_from_cli: bool,
) -> Result<Vec<String>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError(format!(
            "{key}: the list is empty; leave the key out to probe from every defined region"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let known = name.value == DIRECT || defined.iter().any(|d| d.region.name == name.value);
        if !known {
            let hint = if regions_from_cli {
                "; --region/REGIONS replace the file's [[region]] list"
            } else {
                ""
            };
            return Err(ConfigError(format!(
                "{}: region {:?} is not defined: add a [[region]] with that name, or use \
                 \"direct\"{hint}",
                name.source, name.value
            )));
        }
        if out.contains(&name.value) {
            return Err(ConfigError(format!(
                "{}: region {:?} is listed twice",
                name.source, name.value
            )));
        }
        out.push(name.value.clone());
    }
    Ok(out)
}

/// The regions of `--region`/`REGIONS`: `NAME=PROXY_URL`, or `direct` alone.
pub(super) fn cli_regions(raw: &[Setting]) -> Result<Vec<Defined>, ConfigError> {
    let mut out: Vec<Defined> = Vec::with_capacity(raw.len());
    for Setting { value: entry, source } in raw {
        let option = source.as_str();
        let (name, proxy) = match entry.split_once('=') {
            Some((name, proxy)) => (name.trim(), Some(proxy.trim())),
            None if entry.trim() == DIRECT => (DIRECT, None),
            None => {
                return Err(ConfigError(format!(
                    "{option}: {:?} has no proxy: expected NAME=PROXY_URL (the proxy as \
                     http://HOST:PORT), or `direct` to probe without one",
                    redact::text(entry)
                )))
            }
        };
        region_name(option, name)?;
        if out.iter().any(|d| d.region.name == name) {
            return Err(ConfigError(format!("{option}: region {name:?} is given twice")));
        }
        let proxy = match proxy {
            Some(_) if name == DIRECT => return Err(direct_with_proxy(option)),
            Some(raw) => Some(proxy_url(option, raw)?),
            None => None,
        };
        let region =
            Region { name: name.to_owned(), proxy, recipients: Vec::new(), channels: Vec::new() };
        out.push(Defined { region, at: option.to_owned() });
    }
    Ok(out)
}

/// The `[[region]]`s of the config file.
pub(super) fn file_regions(file: &ConfigFile) -> Result<Vec<Defined>, ConfigError> {
    let mut out: Vec<Defined> = Vec::with_capacity(file.settings.regions.len());
    for (i, entry) in file.settings.regions.iter().enumerate() {
        let at = format!("region[{}]", i + 1);
        let key = |name: &str| file.key(&format!("{at}.{name}"));
        region_name(&key("name"), &entry.name)?;
        if let Some(first) = out.iter().find(|d| d.region.name == entry.name) {
            return Err(ConfigError(format!(
                "{}: region {:?} is already defined by {}",
                key("name"),
                entry.name,
                first.at
            )));
        }
        let proxy = match &entry.proxy {
            Some(_) if entry.name == DIRECT => return Err(direct_with_proxy(&key("proxy"))),
            Some(raw) => Some(proxy_url(&key("proxy"), raw.expose())?),
            None => None,
        };
        let recipients = entry
            .recipients
            .iter()
            .enumerate()
            .map(|(j, r)| address(&key(&format!("recipients[{}]", j + 1)), r))
            .collect::<Result<_, _>>()?;
        let channels = entry.channels.clone();
        let region = Region { name: entry.name.clone(), proxy, recipients, channels };
        out.push(Defined { region, at });
    }
    Ok(out)
}

/// The regions some target names, in definition order, an implicit [`DIRECT`] first.
pub(super) fn used_regions(defined: Vec<Defined>, targets: &[Target]) -> Vec<Region> {
    let named = |name: &str| targets.iter().any(|t| t.regions.iter().any(|r| r == name));
    let mut out = Vec::with_capacity(defined.len() + 1);
    if named(DIRECT) && !defined.iter().any(|d| d.region.name == DIRECT) {
        out.push(Region {
            name: DIRECT.to_string(),
            proxy: None,
            recipients: Vec::new(),
            channels: Vec::new(),
        });
    }
    out.extend(defined.into_iter().map(|d| d.region).filter(|r| named(&r.name)));
    out
}

pub(super) fn direct_with_proxy(option: &str) -> ConfigError {
    ConfigError(format!(
        "{option}: the region {DIRECT:?} probes without a proxy by definition; give the region \
         with a proxy another name"
    ))
}

/// A region name: it goes into the `state.region` column, logs and email subjects.
pub(super) fn region_name(option: &str, name: &str) -> Result<(), ConfigError> {
    let fits = (1..=MAX_REGION_NAME).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fits {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{option}: invalid region name {name:?}: expected 1 to {MAX_REGION_NAME} letters, \
             digits, '-' or '_'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{config, error, file_error, with_file};

    #[test]
    fn regions_default_to_every_defined_one_and_only_used_ones_are_kept() {
        const FILE: &str = "[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n\
            [[region]]\nname = \"us\"\nproxy = \"http://q:3128\"\n\
            [[region]]\nname = \"ap\"\nproxy = \"http://r:3128\"\n\
            [[target]]\nurl = \"https://a.example.com/h\"\nregions = [\"us\", \"direct\"]\n\
            [[target]]\nurl = \"https://b.example.com/h\"\nregions = [\"eu\"]\n";
        let c = with_file(FILE, &[], &[]).unwrap();
        let names: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["direct", "eu", "us"], "implicit direct first, unused ap left out");
        let e =
            file_error("[[target]]\nurl = \"https://a/h\"\nregions = [\"direct\", \"direct\"]\n");
        assert!(
            e.starts_with("monitor.toml: target[1].regions[2]: region \"direct\" is listed twice"),
            "{e}"
        );
        let eu = "[[region]]\nname = \"eu\"\nproxy = \"http://p:3128\"\n";
        let c = with_file(eu, &[], &[("API_URL", "https://a/h")]).unwrap();
        assert_eq!(c.targets[0].regions, ["eu"], "API_URL's target is probed from eu");
        let c = with_file("[[target]]\nurl = \"https://a/h\"\n", &[], &[]).unwrap();
        assert_eq!((c.targets[0].regions.clone(), c.regions.len()), (vec![DIRECT.to_string()], 1));
    }

    #[test]
    fn region_flags_and_variable_are_parsed() {
        let c = config(&["--region", "eu=http://p:3128"], &[]).unwrap();
        assert_eq!(
            c.regions,
            [Region {
                name: "eu".into(),
                proxy: Some("http://p:3128".into()),
                recipients: vec![],
                channels: vec![]
            }]
        );
        assert_eq!(c.targets[0].regions, ["eu"], "not direct unless asked for");

        let c =
            config(&["--region", "direct", "--region", "us=http://u:p%40ss@q:80/"], &[]).unwrap();
        let names: Vec<&str> = c.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["direct", "us"]);
        assert_eq!(c.regions[0].proxy, None);
        assert_eq!(
            c.regions[1].proxy.as_deref(),
            Some("http://u:p%40ss@q:80"),
            "port kept, / dropped"
        );
        assert_eq!(
            c.regions[1].proxy_address().as_deref(),
            Some("http://u:p%40ss@q:80"),
            "still encoded: the HTTP client decodes it once"
        );
        assert_eq!(c.regions[0].proxy_address(), None);
        assert_eq!(c.targets[0].regions, ["direct", "us"]);

        let c = config(&[], &[("REGIONS", "direct, eu=http://p:3128")]).unwrap();
        assert_eq!(c.regions.len(), 2);
        let c = config(&["--region", "ap=http://r:1"], &[("REGIONS", "direct")]).unwrap();
        assert_eq!(c.regions[0].name, "ap", "the flag replaces REGIONS");
        let c = config(&[], &[]).unwrap();
        assert_eq!(
            (c.regions[0].name.as_str(), c.targets[0].regions.clone()),
            (DIRECT, vec![DIRECT.into()])
        );
    }

    #[test]
    fn bad_region_flags_are_refused_with_the_reason() {
        for (raw, why) in [
            ("eu", "has no proxy"),
            ("=http://p:3128", "invalid region name \"\""),
            ("e u=http://p:3128", "invalid region name"),
            (&format!("{}=http://p:1", "x".repeat(65)), "invalid region name"),
            ("eu=", "invalid proxy URL"),
            ("eu=https://p:3128", "unsupported scheme \"https\""),
            ("eu=socks5://p:1080", "unsupported scheme \"socks5\""),
            ("eu=http://p", "no port"),
            ("eu=http://p:3128/path", "ends with its port"),
            ("eu=http://p:3128?x=1", "ends with its port"),
            ("eu=http://[::1]:3128", "IPv6"),
            ("eu=http://us%3Aer:pw@p:3128", "user name cannot contain ':'"),
            ("direct=http://p:3128", "probes without a proxy"),
            ("eu=http://u:pa ss@p:3128", "contains ' '"),
        ] {
            let e = error(&["--region", raw]);
            assert!(e.starts_with("--region: ") && e.contains(why), "{raw:?} → {e}");
        }
        let e = error(&["--region", "eu=http://p:1", "--region", "eu=http://q:1"]);
        assert!(e.contains("region \"eu\" is given twice"), "{e}");
        for raw in ["eu=http://u:12/s3cret@p:3128", "eu=ftp://u:s3cret@p:1", "http://u:s3cret@p:1"]
        {
            let e = config(&["--region", raw], &[]).unwrap_err().to_string();
            assert!(e.starts_with("--region: ") && !e.contains("s3cret"), "{raw:?} → {e}");
        }
    }
}
