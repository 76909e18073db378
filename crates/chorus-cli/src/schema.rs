//! `chorus schema`: regenerate (or, with `--check`, verify) the committed artifacts derived
//! from the code and the spec: `schema/*.json` (protocol, HTTP, fixture and report schemas,
//! the AsyncAPI document) and `spec/requirements.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chorus_protocol::requirements::{registry_from_sources, registry_json};

/// Arguments of `chorus schema`.
#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Do not write: exit with status 1 when a committed file differs from what the code generates.
    #[arg(long)]
    pub check: bool,
    /// Repository root holding `schema/` and `spec/`.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

/// One generated artifact: its path under the root and its content.
struct Artifact {
    path: PathBuf,
    content: String,
}

fn spec_sources(root: &Path) -> Result<Vec<(String, String)>, String> {
    let dir = root.join("spec");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = format!(
                "spec/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            std::fs::read_to_string(&p)
                .map(|text| (name, text))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

fn artifacts(root: &Path) -> Result<Vec<Artifact>, String> {
    let mut out: Vec<Artifact> = chorus_protocol::schema::files()
        .into_iter()
        .chain(chorus_conformance::schema::files())
        .map(|(name, content)| Artifact {
            path: PathBuf::from("schema").join(name),
            content,
        })
        .collect();
    out.push(Artifact {
        path: PathBuf::from("schema/asyncapi.json"),
        content: crate::asyncapi::file()?,
    });
    let registry = registry_from_sources(&spec_sources(root)?).map_err(|e| e.to_string())?;
    out.push(Artifact {
        path: PathBuf::from("spec/requirements.json"),
        content: registry_json(&registry),
    });
    Ok(out)
}

/// Runs the subcommand.
pub fn run(args: SchemaArgs) -> ExitCode {
    let artifacts = match artifacts(&args.root) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chorus schema: {e}");
            return ExitCode::from(2);
        }
    };
    let mut stale = 0;
    for artifact in artifacts {
        let path = args.root.join(&artifact.path);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == artifact.content {
            continue;
        }
        if args.check {
            eprintln!(
                "stale: {} (run `chorus schema` and commit the result)",
                artifact.path.display()
            );
            stale += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                eprintln!("chorus schema: {}: {e}", parent.display());
                return ExitCode::from(2);
            }
        }
        if let Err(e) = std::fs::write(&path, &artifact.content) {
            eprintln!("chorus schema: {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("wrote {}", artifact.path.display());
    }
    if stale > 0 {
        ExitCode::from(1)
    } else {
        if args.check {
            println!("schema and requirement registry are up to date");
        }
        ExitCode::SUCCESS
    }
}
