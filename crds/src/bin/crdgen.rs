//! Writes gpuscope's CRD YAML into config/crd/ (or the directory given as the first argument).

use std::path::PathBuf;

use gpuscope_crds::crd_yaml::{CRD_DIR, render_all};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(CRD_DIR));
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in render_all()? {
        let path = dir.join(&file);
        std::fs::write(&path, yaml)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
