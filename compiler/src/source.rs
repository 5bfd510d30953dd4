//! Where a model comes from, resolved once for every command: a built-in
//! config (seeded weights), a Hugging Face directory or a llama2.c
//! checkpoint.

use crate::model::{BUILT_IN, Config, ModelError, Weights};
use crate::{hf, llama2c};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A built-in config by name; its weights are seeded.
    BuiltIn(String),
    HuggingFace(PathBuf),
    Llama2c(PathBuf),
}

impl ModelSource {
    /// A built-in name first, then an existing directory (Hugging Face) or
    /// file (llama2.c); anything else is an error listing the built-ins.
    pub fn resolve(spec: &str) -> Result<ModelSource, ModelError> {
        if Config::built_in(spec).is_some() {
            return Ok(ModelSource::BuiltIn(spec.to_string()));
        }
        let path = Path::new(spec);
        if path.is_dir() {
            Ok(ModelSource::HuggingFace(path.to_path_buf()))
        } else if path.exists() {
            Ok(ModelSource::Llama2c(path.to_path_buf()))
        } else {
            Err(ModelError::Format {
                file: spec.to_string(),
                message: format!(
                    "neither a built-in model ({}) nor an existing file or directory",
                    BUILT_IN.join(", ")
                ),
            })
        }
    }

    /// The spec and where it came from, as reports name it.
    pub fn name(&self) -> String {
        match self {
            ModelSource::BuiltIn(n) => format!("{n} (built-in)"),
            ModelSource::HuggingFace(p) => format!("{} (Hugging Face)", p.display()),
            ModelSource::Llama2c(p) => format!("{} (llama2.c)", p.display()),
        }
    }

    /// The config alone (a Hugging Face directory's weights are not read).
    pub fn config(&self) -> Result<Config, ModelError> {
        match self {
            ModelSource::BuiltIn(n) => Ok(Config::built_in(n).expect("resolved as built in")),
            ModelSource::HuggingFace(p) => hf::config_of(p),
            ModelSource::Llama2c(p) => Ok(llama2c::load(p)?.0),
        }
    }

    /// The config and the checkpoint's weights (none for a built-in config).
    pub fn load(&self) -> Result<(Config, Option<Weights>), ModelError> {
        match self {
            ModelSource::BuiltIn(_) => Ok((self.config()?, None)),
            ModelSource::HuggingFace(p) => hf::load(p).map(|(c, w)| (c, Some(w))),
            ModelSource::Llama2c(p) => llama2c::load(p).map(|(c, w)| (c, Some(w))),
        }
    }
}
