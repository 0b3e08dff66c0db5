//! The Makefile, through the real `make`: the commands a new user runs in the first hour.
//! Nothing here builds anything: `CARGO=echo` makes `make run` print the command line it
//! would run, with the shell's expansions done, instead of compiling for minutes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn makefile() -> String {
    std::fs::read_to_string(repo().join("Makefile")).expect("the Makefile")
}

/// `make ARGS` in `dir` with the Makefile of this repository, an environment holding nothing
/// that changes what `make run` does but `env`; returns stdout and stderr.
fn make_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut command = Command::new("make");
    command.arg("--no-print-directory").arg("-f").arg(repo().join("Makefile")).arg("-C").arg(dir);
    command.args(args);
    // The settings `make run` must leave to the binary, and make's own from an outer make.
    for name in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "DB",
        "CONFIG",
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("make runs");
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "make {args:?} {env:?} failed: {out}\n{err}");
    (out, err)
}

fn make(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    make_in(&repo(), args, env)
}

/// The command line `make run` hands to cargo (echoed instead of run).
fn run_command(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["run", "CARGO=echo"];
    all.extend_from_slice(args);
    let (out, _) = make(&all, env);
    out.lines()
        .find(|l| l.starts_with("run --release"))
        .unwrap_or_else(|| panic!("no cargo command in {out:?}"))
        .to_owned()
}

#[test]
fn make_run_leaves_the_database_to_the_documented_sources() {
    let plain = "run --release -p api-monitor -- run";
    // Each of these is read by the binary itself, which applies flag > variable > _FILE >
    // config file > default; a --db from the Makefile would beat them all.
    for env in [
        &[][..],
        &[("CONFIG", "examples/mysql.toml")],
        &[("DATABASE_URL_FILE", "/run/secrets/db_url")],
        &[("DATABASE_URL", "mysql://monitor@db/monitor")],
        &[("CONFIG", "examples/mysql.toml"), ("DATABASE_URL_FILE", "/run/secrets/db_url")],
    ] {
        assert_eq!(run_command(&[], env), plain, "{env:?}: make run must not pass --db");
    }
    assert_eq!(
        run_command(&["DB=sqlite://other.db"], &[]),
        format!("{plain} --db sqlite://other.db"),
        "`make run DB=…` is the one way the Makefile chooses the database"
    );
}

#[test]
fn make_run_says_that_the_first_build_takes_minutes() {
    let dir = testkit::temp_dir("make-run-build");
    let target = format!("CARGO_TARGET_DIR={}", dir.display());
    let (out, _) = make(&["run", "CARGO=echo", &target], &[]);
    let said =
        out.lines().position(|l| l.contains("building api-monitor (first time: a few minutes)"));
    let cargo = out.lines().position(|l| l.starts_with("run --release"));
    assert!(said.is_some() && said < cargo, "said before cargo starts: {out}");

    let binary = dir.join("release/api-monitor");
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    std::fs::write(&binary, "").unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (out, err) = make(&["run", "CARGO=echo", &target], &[]);
    assert!(!format!("{out}{err}").contains("first time"), "not once it is built: {out}{err}");
}

/// The targets named in `.PHONY` lines, and the rules (`name:` at the start of a line).
fn phony_and_rules(text: &str) -> (Vec<String>, Vec<(String, Option<String>)>) {
    let mut phony = Vec::new();
    let mut rules = Vec::new();
    for line in text.lines() {
        if let Some(names) = line.strip_prefix(".PHONY:") {
            phony.extend(names.split_whitespace().map(String::from));
            continue;
        }
        let Some((name, rest)) = line.split_once(':') else { continue };
        let is_rule = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !rest.starts_with('=');
        if is_rule {
            let help = rest.split_once("## ").map(|(_, h)| h.trim().to_owned());
            rules.push((name.to_owned(), help));
        }
    }
    (phony, rules)
}

#[test]
fn every_phony_target_has_a_rule_and_every_documented_rule_is_in_make_help() {
    let text = makefile();
    let (phony, rules) = phony_and_rules(&text);
    assert!(phony.len() > 10 && rules.len() > 10, "{phony:?} {rules:?}");
    for name in &phony {
        assert!(rules.iter().any(|(rule, _)| rule == name), ".PHONY names {name}, with no rule");
    }
    let (help, _) = make(&["help"], &[]);
    let lines: Vec<&str> = help.lines().collect();
    let documented: Vec<_> = rules.iter().filter_map(|(n, h)| h.as_ref().map(|h| (n, h))).collect();
    assert_eq!(lines.len(), documented.len(), "one line per documented rule: {help}");
    // Every description starts in one column, however long the target's name.
    let column = |line: &str, description: &str| line.find(description);
    let mut columns = Vec::new();
    for (name, description) in &documented {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(name.as_str()))
            .unwrap_or_else(|| panic!("make help lacks {name}: {help}"));
        let at = column(line, description).unwrap_or_else(|| panic!("{name}: {line}"));
        assert!(line[..at].ends_with(' '), "{name}: name and text apart: {line:?}");
        columns.push(at);
    }
    assert!(columns.windows(2).all(|w| w[0] == w[1]), "columns differ {columns:?}:\n{help}");
}

#[test]
fn make_clean_db_removes_the_sqlite_files_of_make_run_and_nothing_else() {
    let dir = testkit::temp_dir("make-clean-db");
    let files = ["api-monitor.db", "api-monitor.db-wal", "api-monitor.db-shm", "other.db"];
    for file in files {
        std::fs::write(dir.join(file), "x").unwrap();
    }
    make_in(&dir, &["clean-db"], &[]);
    let left: Vec<_> = files.iter().filter(|f| dir.join(f).exists()).collect();
    assert_eq!(left, [&"other.db"]);
    make_in(&dir, &["clean-db", "DB=sqlite://other.db"], &[]);
    assert!(!dir.join("other.db").exists(), "`make run DB=…`'s database");
    make_in(&dir, &["clean-db"], &[]);
}

/// `make demo`'s script with the workspace's debug binaries (built by `make test` first), its
/// stdout and stderr in one stream, in the order written.
fn demo_output() -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg("bash scripts/demo.sh 2>&1")
        .current_dir(repo())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("the demo runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "the demo ends well:\n{text}");
    text
}

#[test]
fn make_demo_prints_each_email_as_it_arrives() {
    if !repo().join("target/debug/mail-sink").exists() {
        panic!("build the binaries first (make test does: cargo build --workspace --bins)");
    }
    let text = demo_output();
    let at = |needle: &str| {
        text.find(needle).unwrap_or_else(|| panic!("no {needle:?} in the demo's output:\n{text}"))
    };
    // The outage email is printed before the monitor even sees the recovery, and the recovery
    // email after it: each as it arrives, not both at the end.
    assert!(at("Subject: [api-monitor] OUTAGE") < at("RECOVERED target="), "{text}");
    assert!(at("RECOVERED target=") < at("Subject: [api-monitor] RECOVERED"), "{text}");
    assert!(text.contains("demo: done"), "{text}");
}
