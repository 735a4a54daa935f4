//! The source tree keeps the shape docs/development.md describes: layers that point one way,
//! and the same file names in every destination. A move that breaks either fails here.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The `crate::<module>` paths a file names, outside comments, with the line they are on.
fn crate_paths(file: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(file).unwrap();
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push((n + 1, name));
            rest = &rest[at + 7..];
        }
    }
    found
}

/// The files of the layer: a directory's files and any `config.rs` compiled into it.
fn assert_imports_none(what: &str, files: &[PathBuf], forbidden: &[&str]) {
    let mut bad = Vec::new();
    for file in files {
        for (line, module) in crate_paths(file) {
            if forbidden.contains(&module.as_str()) {
                bad.push(format!("{}:{line} crate::{module}", file.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{what} imports what it must not:\n{}",
        bad.join("\n")
    );
}

fn destinations() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root().join("src/destination"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn layers_point_one_way() {
    let src = root().join("src");
    let mut config = rust_files(&src.join("config"));
    config.extend(destinations().iter().map(|d| d.join("config.rs")));
    assert_imports_none(
        "the config layer (src/config and each destination's config.rs)",
        &config,
        &[
            "destination",
            "source",
            "transform",
            "pipeline",
            "discovery",
            "control",
            "daemon",
        ],
    );
    assert_imports_none(
        "src/source",
        &rust_files(&src.join("source")),
        &["control", "discovery", "pipeline", "destination", "daemon"],
    );
    // The transform layer sits between the source (whose blocks it rewrites) and the
    // destinations (which run it through the walk): it knows nothing past them.
    assert_imports_none(
        "src/transform",
        &rust_files(&src.join("transform")),
        &["destination", "pipeline", "discovery", "control", "daemon"],
    );
    assert_imports_none(
        "src/source",
        &rust_files(&src.join("source")),
        &["transform"],
    );
    assert_imports_none(
        "src/destination",
        &rust_files(&src.join("destination")),
        &["pipeline", "discovery", "control", "daemon"],
    );
    // AWS identities are a leaf: config checks with it, the daemon and destinations derive
    // clients from it.
    assert_imports_none(
        "src/aws.rs",
        &[src.join("aws.rs")],
        &[
            "config",
            "source",
            "destination",
            "pipeline",
            "discovery",
            "control",
            "daemon",
        ],
    );
}

#[test]
fn every_destination_has_the_common_files() {
    let dirs = destinations();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["elasticsearch", "file", "redshift", "splunk"]);
    let decl = fs::read_to_string(root().join("src/config/destination.rs")).unwrap();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy();
        for file in ["mod.rs", "config.rs", "attempt.rs"] {
            assert!(dir.join(file).is_file(), "{name} has no {file}");
        }
        let mod_rs = fs::read_to_string(dir.join("mod.rs")).unwrap();
        assert!(
            !mod_rs.contains("mod config;"),
            "{name}/config.rs is compiled in the config layer, not by {name}/mod.rs"
        );
        assert!(
            decl.contains(&format!("#[path = \"../destination/{name}/config.rs\"]")),
            "src/config/destination.rs does not compile {name}/config.rs"
        );
        assert!(
            !mod_rs.lines().any(|l| l.starts_with("pub mod ")),
            "{name}'s submodules are private like every destination's"
        );
    }
}
