//! The viewer of the emulator's Stats and Trace formats. Not written yet
//! (issue 7); the crate exists so the workspace has its final shape.
