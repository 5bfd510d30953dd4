//! What the compiler's test files share.

use std::path::PathBuf;

/// The repository's test checkpoints (`models/`, see its README);
/// fails loudly, not skipped, when they are absent.
pub fn models() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    assert!(
        dir.join("stories260K.bin").exists(),
        "{} is missing: these tests need the repository's checkpoints (models/)",
        dir.display()
    );
    dir
}
