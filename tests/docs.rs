//! The documentation against the program and against itself:
//!
//! - every `--option` and every environment variable that `api-monitor --help` prints is in
//!   the README's options table (its rows, not just anywhere in the file), and every command
//!   the help lists is in the README;
//! - every relative link in README.md and docs/*.md leads to a file that exists, and a link to
//!   a `#section` to a heading of that file;
//! - every docs page has a title and a one-line purpose, and the README stays a short landing
//!   page.
//!
//! Plain std: the help comes from the real binary, the Markdown is read line by line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// What `api-monitor --help` prints.
fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_api-monitor"))
        .arg("--help")
        .output()
        .expect("api-monitor --help runs");
    assert!(out.status.success(), "api-monitor --help exits 0: {out:?}");
    String::from_utf8(out.stdout).expect("--help is UTF-8")
}

/// The README.md and docs/*.md files, README first.
fn markdown_files() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds the pages the README links to");
    let mut files = vec![root().join("README.md")];
    files.extend(docs);
    files
}

// --- What --help lists -------------------------------------------------------------------------

/// Every `--long-option` in `text`: `--` at the start of a word, then a lowercase letter.
fn long_options(text: &str) -> BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = BTreeSet::new();
    for i in 0..chars.len().saturating_sub(2) {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '-');
        if starts_word
            && chars[i] == '-'
            && chars[i + 1] == '-'
            && chars[i + 2].is_ascii_lowercase()
        {
            let name: String = chars[i + 2..]
                .iter()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || **c == '-')
                .collect();
            found.insert(format!("--{}", name.trim_end_matches('-')));
        }
    }
    found
}

/// The maximal runs of letters, digits and `_` in `text`.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// `API_URL`, `LOG_LEVEL`…: capitals and digits joined by single underscores.
fn is_variable_with_underscore(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && word.contains('_')
        && !word.ends_with('_')
        && !word.contains("__")
}

fn is_capitalised_word(word: &str) -> bool {
    word.len() >= 2
        && word.starts_with(|c: char| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every environment variable the help names: any `NAME_WITH_UNDERSCORES`, plus the
/// right-hand column of the option lines (`--config FILE   description   CONFIG`), where the
/// variables without an underscore (`CONFIG`, `LISTEN`…) are. Columns are separated by two
/// spaces or more.
fn environment_variables(help: &str) -> BTreeSet<String> {
    let mut found: BTreeSet<String> =
        words(help).filter(|w| is_variable_with_underscore(w)).map(String::from).collect();
    for line in help.lines().filter(|line| line.trim_start().starts_with('-')) {
        let columns: Vec<&str> =
            line.trim().split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        if let Some(first) = columns.get(2).and_then(|column| words(column).next()) {
            if is_capitalised_word(first) {
                found.insert(first.to_string());
            }
        }
    }
    found
}

/// The commands of the help's USAGE lines: `api-monitor [run] …`, `api-monitor check …`.
fn commands(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| line.trim().strip_prefix("api-monitor "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|word| word.trim_start_matches('[').trim_end_matches(']'))
        .filter(|word| word.starts_with(|c: char| c.is_ascii_lowercase()))
        .map(String::from)
        .collect()
}

// --- The README's options table ----------------------------------------------------------------

/// The rows of the table under the README heading `## Options`.
fn options_table(readme: &str) -> Vec<String> {
    let mut lines = readme.lines().skip_while(|line| {
        !(line.starts_with("## ") && line[3..].trim().eq_ignore_ascii_case("options"))
    });
    assert!(lines.next().is_some(), "README.md has a section `## Options`");
    let rows: Vec<String> = lines
        .take_while(|line| !line.starts_with('#'))
        .filter(|line| line.trim_start().starts_with('|'))
        .filter(|line| !line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')))
        .map(String::from)
        .collect();
    assert!(rows.len() > 10, "the options table under `## Options` has its rows: {rows:#?}");
    rows
}

/// Whether `needle` occurs in `haystack` as a whole word: not inside a longer name made of
/// characters for which `word` holds (`--log` is not in `--log-file`, `SMTP_URL` not in
/// `SMTP_URL_FILE`).
fn contains_whole(haystack: &str, needle: &str, word: impl Fn(char) -> bool) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(&word) && !after.is_some_and(&word)
    })
}

#[test]
fn the_readme_options_table_lists_every_option_and_variable_of_the_help() {
    let help = help();
    let readme = read(&root().join("README.md"));
    let table = options_table(&readme).join("\n");

    let options = long_options(&help);
    for expected in ["--url", "--listen", "--help"] {
        assert!(options.contains(expected), "the help's options were found: {options:?}");
    }
    let option_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let missing: Vec<&String> =
        options.iter().filter(|o| !contains_whole(&table, o, option_char)).collect();
    assert!(missing.is_empty(), "README.md's options table lacks {missing:?} (from --help)");

    let variables = environment_variables(&help);
    for expected in ["API_URL", "CONFIG", "LISTEN", "SMTP_PASSWORD_FILE"] {
        assert!(variables.contains(expected), "the help's variables were found: {variables:?}");
    }
    let variable_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let missing: Vec<&String> =
        variables.iter().filter(|v| !contains_whole(&table, v, variable_char)).collect();
    assert!(missing.is_empty(), "README.md's options table lacks {missing:?} (from --help)");
}

#[test]
fn the_readme_shows_every_command_of_the_help() {
    let help = help();
    let readme = read(&root().join("README.md"));
    let commands = commands(&help);
    for expected in ["run", "check", "report", "outbox"] {
        assert!(commands.contains(expected), "the help's commands were found: {commands:?}");
    }
    for command in &commands {
        assert!(
            readme.contains(&format!("api-monitor {command}"))
                || readme.contains(&format!("api-monitor [{command}]")),
            "README.md shows `api-monitor {command}`, as --help does"
        );
    }
}

// --- Links -------------------------------------------------------------------------------------

/// The lines of `markdown` outside fenced code blocks, with inline code spans removed.
fn prose_lines(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            let without_code: String =
                line.split('`').enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, s)| s).collect();
            lines.push(without_code);
        }
    }
    lines
}

/// The targets of the links in `markdown`: `[text](target)`, `![alt](target)` and reference
/// definitions `[label]: target`.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            targets.push(target.trim_start_matches('<').trim_end_matches('>').to_string());
            rest = &rest[end..];
        }
        let trimmed = line.trim_start();
        if let Some((label, target)) = trimmed.strip_prefix('[').and_then(|l| l.split_once("]:")) {
            if !label.is_empty() && !label.contains(']') {
                if let Some(target) = target.split_whitespace().next() {
                    targets.push(target.to_string());
                }
            }
        }
    }
    targets
}

/// The anchors GitHub gives the headings of `markdown`: lowercased, punctuation dropped,
/// spaces made `-`, a repeated heading suffixed `-1`, `-2`…
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let Some(heading) = line.strip_prefix('#').filter(|_| !fenced) else { continue };
        let text = heading.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let slug: String = text
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while !found.insert(unique.clone()) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
    }
    found
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

#[test]
fn every_relative_link_leads_to_a_file_that_exists() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        let dir = file.parent().expect("a file has a directory");
        for target in link_targets(&text) {
            if target.is_empty() {
                broken.push(format!("{}: an empty link", file.display()));
                continue;
            }
            if is_external(&target) {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() { file.clone() } else { dir.join(path) };
            if !linked.exists() {
                broken.push(format!("{}: {target} (no file {})", file.display(), linked.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let is_markdown = linked.extension().is_some_and(|ext| ext == "md");
                if is_markdown && !anchors(&read(&linked)).contains(anchor) {
                    broken.push(format!("{}: {target} (no such heading)", file.display()));
                }
            }
        }
    }
    assert!(checked > 10, "the README and docs pages link to each other ({checked} links)");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

// --- Shape -------------------------------------------------------------------------------------

#[test]
fn every_docs_page_has_a_title_and_a_purpose() {
    for file in markdown_files().into_iter().skip(1) {
        let text = read(&file);
        let mut lines = text.lines();
        let title = lines.next().unwrap_or("");
        assert!(title.starts_with("# "), "{} starts with a `# Title`", file.display());
        let purpose = lines.find(|line| !line.trim().is_empty()).unwrap_or("");
        assert!(
            !purpose.starts_with(['#', '|', '-', '`', '!', '[']),
            "{}: the title is followed by a sentence saying what the page is for",
            file.display()
        );
    }
}

#[test]
fn the_readme_stays_a_landing_page() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(lines < 200, "README.md has {lines} lines: move details to a docs/ page");
}

// --- The helpers themselves --------------------------------------------------------------------

#[test]
fn the_helpers_read_what_they_should() {
    let help = "    --config FILE      TOML file with targets    CONFIG\n\
                \x20   --log-file PATH    also append the log       LOG_FILE\n\
                \x20   -q, --quiet        less log LOG_LEVEL=error|warn\n\
                \x20                      password also from DATABASE_PASSWORD or *_PASSWORD\n\
                \x20   --url URL          target health URL, TOML   [default: none]\n";
    assert_eq!(
        long_options(help).into_iter().collect::<Vec<_>>(),
        ["--config", "--log-file", "--quiet", "--url"]
    );
    assert_eq!(
        environment_variables(help).into_iter().collect::<Vec<_>>(),
        ["CONFIG", "DATABASE_PASSWORD", "LOG_FILE", "LOG_LEVEL"]
    );
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    assert!(!contains_whole("`SMTP_URL_FILE`", "SMTP_URL", word));
    assert!(contains_whole("`SMTP_URL`, `SMTP_URL_FILE`", "SMTP_URL", word));
    assert_eq!(
        link_targets("[a](docs/a.md#x) and ![b](<b.png> \"t\")\n`[c](not-a-link)`\n[d]: e.md\n"),
        ["docs/a.md#x", "b.png", "e.md"]
    );
    assert_eq!(
        anchors("# T\n## Health: `/healthz`\n## Config file: many targets, regions\n## T\n"),
        BTreeSet::from(
            ["t", "health-healthz", "config-file-many-targets-regions", "t-1"].map(String::from)
        )
    );
}
