//! Embeds the fixtures, the spec's Markdown (for the requirement registry) and
//! `unobservable.json` into the library, so an installed `chorus conform` needs no checkout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("..");
    let mut out = String::new();
    // Client cases (fixtures/client/) have a format of their own: CLIENT_FIXTURES.
    let client_dir = root.join("fixtures").join("client");
    let (client_fixtures, fixtures): (Vec<PathBuf>, Vec<PathBuf>) =
        collect(&root.join("fixtures"), "json")
            .into_iter()
            .partition(|p| p.starts_with(&client_dir));
    let spec = collect(&root.join("spec"), "md");
    let requirements_json = root.join("spec/requirements.json");
    let unobservable = manifest.join("unobservable.json");
    let client_unobservable = manifest.join("client-unobservable.json");
    table(&mut out, "FIXTURES", &root, &fixtures);
    table(&mut out, "CLIENT_FIXTURES", &root, &client_fixtures);
    table(&mut out, "SPEC", &root, &spec);
    optional(&mut out, "REQUIREMENTS_JSON", &requirements_json);
    optional(&mut out, "UNOBSERVABLE_JSON", &unobservable);
    optional(&mut out, "CLIENT_UNOBSERVABLE_JSON", &client_unobservable);
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
    for dir in ["fixtures", "spec"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", unobservable.display());
    println!("cargo:rerun-if-changed={}", client_unobservable.display());
    println!("cargo:rerun-if-changed=build.rs");
}

fn collect(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == ext) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

fn table(out: &mut String, name: &str, root: &Path, files: &[PathBuf]) {
    let _ = writeln!(out, "pub static {name}: &[(&str, &str)] = &[");
    for f in files {
        let rel = f
            .strip_prefix(root)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        let _ = writeln!(
            out,
            "    ({rel:?}, include_str!({:?})),",
            f.display().to_string()
        );
    }
    let _ = writeln!(out, "];");
}

fn optional(out: &mut String, name: &str, file: &Path) {
    if file.exists() {
        let _ = writeln!(
            out,
            "pub static {name}: Option<&str> = Some(include_str!({:?}));",
            file.display().to_string()
        );
    } else {
        let _ = writeln!(out, "pub static {name}: Option<&str> = None;");
    }
}
