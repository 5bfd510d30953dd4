//! What the compiler's test files share.

use std::path::PathBuf;

/// The shared checkpoints (`../shared/models` beside the repository);
/// fails loudly, not skipped, when they are absent.
pub fn models() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models");
    assert!(
        dir.join("stories260K.bin").exists(),
        "{} is missing: these tests need the shared checkpoints beside the repository (../shared/models)",
        dir.display()
    );
    dir
}
