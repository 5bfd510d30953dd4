//! The compiler from transformer checkpoints to Programs. Not written yet
//! (issue 4); the crate exists so the workspace has its final shape.
