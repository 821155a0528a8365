//! The model files a user points at: a Hugging Face checkpoint directory (config.json +
//! safetensors, or `lfm quantize` output), a `.gguf` file, or a directory holding exactly one
//! `.gguf` — opened as one [`ModelFiles`] that gives the config, the weights as a [`Source`],
//! the tokenizer and the chat template.

use super::config::Config;
use super::weights::{Checkpoint, Source};
use crate::chat::ChatTemplate;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gguf::GgufModel;
use crate::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

pub enum ModelFiles {
    Checkpoint(Checkpoint),
    Gguf(GgufModel),
}

impl ModelFiles {
    /// Opens `path`: a `.gguf` file; a directory with `config.json` (a checkpoint); or a
    /// directory without one that holds exactly one `.gguf` (several: the error lists them).
    pub fn open(path: &Path) -> Result<Self> {
        match Self::gguf_path(path)? {
            Some(g) => Ok(ModelFiles::Gguf(GgufModel::open(&g)?)),
            None => Ok(ModelFiles::Checkpoint(Checkpoint::open(path)?)),
        }
    }

    /// The GGUF file `path` names, if it names one.
    pub fn gguf_path(path: &Path) -> Result<Option<PathBuf>> {
        if path.is_file() {
            return Ok(Some(path.to_path_buf()));
        }
        if !path.is_dir() || path.join("config.json").exists() {
            return Ok(None);
        }
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")) && p.is_file())
            .collect();
        ggufs.sort();
        match ggufs.len() {
            0 => Ok(None),
            1 => Ok(ggufs.pop()),
            _ => Err(Error::Invalid(format!(
                "{} holds {} GGUF files; name one: {}",
                path.display(),
                ggufs.len(),
                ggufs
                    .iter()
                    .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Only the config (for `lfm info`): config.json of a checkpoint, or a GGUF's metadata.
    pub fn config_only(path: &Path) -> Result<Config> {
        match Self::gguf_path(path)? {
            Some(g) => Ok(GgufModel::open(&g)?.config),
            None => Config::from_file(&path.join("config.json")),
        }
    }

    pub fn config(&self) -> &Config {
        self.source().config()
    }

    pub fn source(&self) -> &dyn Source {
        match self {
            ModelFiles::Checkpoint(c) => c,
            ModelFiles::Gguf(g) => g,
        }
    }

    /// The format the weights load as when no `--dtype` is given, if the files decide it: what
    /// a checkpoint written by `lfm quantize` holds, or a GGUF's main type (its matrices keep
    /// their own types, see [`GgufModel::main_dtype`]).
    pub fn stored_dtype(&self) -> Option<DType> {
        match self {
            ModelFiles::Checkpoint(c) => c.prequantized,
            ModelFiles::Gguf(g) => g.native.then(|| g.main_dtype()),
        }
    }

    /// Asks for the weights converted to `dtype` (`--dtype`): a GGUF's tensors are then
    /// dequantized and converted; a checkpoint written by `lfm quantize` refuses any format
    /// but its own.
    pub fn convert_to(&mut self, dtype: DType) -> Result<()> {
        match self {
            ModelFiles::Gguf(g) => g.native = false,
            ModelFiles::Checkpoint(c) => {
                if let Some(stored) = c.prequantized.filter(|&s| s != dtype) {
                    return Err(Error::Invalid(format!(
                        "{} holds {stored} weights written by `lfm quantize`; load it with --dtype {stored} (or omit \
                         --dtype), or quantize the original checkpoint to {dtype}",
                        c.dir.display()
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn tokenizer(&self) -> Result<Tokenizer> {
        match self {
            ModelFiles::Checkpoint(c) => Tokenizer::from_dir(&c.dir),
            ModelFiles::Gguf(g) => g.tokenizer(),
        }
    }

    /// The model's chat template; a GGUF without one gets the built-in LFM2 template.
    pub fn chat_template(&self, tok: &Tokenizer) -> Result<ChatTemplate> {
        match self {
            ModelFiles::Checkpoint(c) => ChatTemplate::from_dir(&c.dir),
            ModelFiles::Gguf(g) => Ok(g.chat_template(tok)?.unwrap_or_else(|| {
                log::warn!(
                    "{}: no tokenizer.chat_template; using the built-in LFM2 template",
                    g.file.path.display()
                );
                ChatTemplate::builtin()
            })),
        }
    }

    /// Bytes of the files holding the weights.
    pub fn file_bytes(&self) -> u64 {
        match self {
            ModelFiles::Checkpoint(c) => c.file_bytes(),
            ModelFiles::Gguf(g) => std::fs::metadata(&g.file.path).map_or(0, |m| m.len()),
        }
    }
}
