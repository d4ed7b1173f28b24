//! The patches under `benches/experiments/` wait for a session with a GPU (`benches/device.sh
//! prepare` applies each to HEAD and builds it). One that no longer applies is found only then,
//! on a machine lent for minutes; this test finds it at the commit that broke it.
//!
//! It needs `git` (`git apply --check`, which also works outside a repository) and fails without
//! it.

use std::path::Path;
use std::process::Command;

#[test]
fn experiment_patches_apply_to_this_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("benches/experiments");
    let mut patches: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    patches.sort();
    assert!(!patches.is_empty(), "no .patch in {}", dir.display());
    let mut stale = Vec::new();
    for patch in &patches {
        let out = Command::new("git")
            .args(["apply", "--check"])
            .arg(patch)
            .current_dir(root)
            .output()
            .expect("running git (needed to check the experiment patches)");
        if !out.status.success() {
            stale.push(format!(
                "{}: {}",
                patch.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "experiment patches that no longer apply (rebase them onto this tree):\n{}",
        stale.join("\n")
    );
}
