//! The dataflow kernel library: for each kernel a Program-fragment generator,
//! a plain-Rust reference and a cost model. Not written yet (issue 3); the
//! crate exists so the workspace has its final shape.
