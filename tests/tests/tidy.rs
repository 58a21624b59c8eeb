//! House rules checked as tests: every Rust file opens with a `//!` doc
//! saying what it holds, no test is `#[ignore]`d, and every lint `allow`
//! carries a reason.

#![allow(clippy::unwrap_used, reason = "a failed step is the test failure")]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut files = Vec::new();
    for dir in ["drivers", "sync", "edge", "central", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&root).unwrap().to_path_buf(), text)
        })
        .collect()
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let missing: Vec<_> = workspace_files()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(missing.is_empty(), "files without a `//!` doc: {missing:?}");
}

#[test]
fn no_test_is_ignored_and_every_allow_has_a_reason() {
    let ignore = ["#[", "ignore]"].concat();
    let allow = ["#![", "allow("].concat();
    let inner_allow = ["#[", "allow("].concat();
    let mut offenders = Vec::new();
    for (path, text) in workspace_files() {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let line = line.trim();
            // rustfmt may wrap the attribute; its reason is within a few lines.
            let attribute = lines[n..lines.len().min(n + 4)].join(" ");
            let unexplained = (line.starts_with(&allow) || line.starts_with(&inner_allow))
                && !attribute.contains("reason =");
            if line.starts_with(&ignore) || unexplained {
                offenders.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
