//! The house rule of `../shared/STYLE.md`: modules only look down the
//! request's path. Each file of `src/` is given its floor; every `crate::…`
//! path it names (in `use` lines and in code) must be on its floor or
//! below. Run by the normal suite, so an arrow pointing up fails CI.
//!
//! ```text
//! server → pipeline → endpoints → auth → store / upstream → ground floor
//! ```
//! The ground floor is `config`, `error`, `metrics`, `body`, `host`,
//! `activity`, `clock`, `files` and `text`.

use std::path::{Path, PathBuf};

/// The floor of a top-level module; higher floors may use lower ones.
fn floor(module: &str) -> Option<u8> {
    Some(match module {
        "config" | "error" | "metrics" | "body" | "host" | "activity" | "clock" | "files"
        | "text" => 0,
        "store" | "upstream" => 1,
        "auth" => 2,
        "endpoints" => 3,
        "pipeline" => 4,
        "server" => 5,
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::<module>`, or `super::`
/// from a file directly under `src/<module>/` (which stays inside it).
fn named_modules(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        found.push(name);
    }
    // `use crate::{a, b::c}` names several.
    for (i, _) in text.match_indices("crate::{") {
        let rest = &text[i + "crate::{".len()..];
        let group = &rest[..rest.find('}').unwrap_or(rest.len())];
        for item in group.split(',') {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_floor_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_owned())
            .unwrap_or_default();
        let Some(own) = floor(&top) else {
            // lib.rs and main.rs sit above every floor.
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for module in named_modules(&text) {
            if let Some(theirs) = floor(&module) {
                if theirs > own {
                    upward.push(format!("{} → crate::{module}", relative.display()));
                }
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "imports that point up the floors:\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_module_is_on_a_floor() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read lib.rs");
    for line in lib.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
        let module = line.trim_end_matches(';');
        assert!(
            floor(module).is_some(),
            "src/{module} has no floor in tests/layers.rs"
        );
    }
}
