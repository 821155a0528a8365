//! Model resolution: a local directory, or a Hugging Face repo id found in (or downloaded into)
//! the local Hugging Face cache.
//!
//! The cache is the one `huggingface_hub` uses, so models downloaded by Python tools are found
//! and models downloaded here are visible to them:
//!
//! * location: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`;
//! * layout: `models--{owner}--{name}/refs/main` holds the commit hash of the `main` revision,
//!   `models--{owner}--{name}/snapshots/{commit}/` holds the files (usually symlinks into
//!   `blobs/`).
//!
//! A snapshot counts as a model only when it has `config.json` and its weights: `model.safetensors`,
//! or `model.safetensors.index.json` with every shard it lists (a symlink whose blob is missing
//! does not count). The `refs/main` snapshot is preferred; otherwise the newest complete one.
//!
//! Environment lookups go through [`HubEnv`] so tests can lay out fake caches without touching
//! the process environment.

use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The environment variables that decide where the cache is and whether the network may be used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubEnv {
    /// `HF_HUB_CACHE`: the hub cache directory itself.
    pub hf_hub_cache: Option<PathBuf>,
    /// `HF_HOME`: the cache is `$HF_HOME/hub`.
    pub hf_home: Option<PathBuf>,
    /// The user's home directory: the cache is `~/.cache/huggingface/hub`.
    pub home: Option<PathBuf>,
    /// `HF_HUB_OFFLINE` set to `1` / `true` / `yes` / `on`.
    pub offline: bool,
    /// `HF_TOKEN`, for gated or private repos.
    pub token: Option<String>,
    /// `HF_ENDPOINT`: the hub's address (default `https://huggingface.co`).
    pub endpoint: Option<String>,
}

impl HubEnv {
    /// Reads the process environment (empty variables count as unset).
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        HubEnv {
            hf_hub_cache: var("HF_HUB_CACHE").map(PathBuf::from),
            hf_home: var("HF_HOME").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| {
                matches!(
                    v.to_string_lossy().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            }),
            token: var("HF_TOKEN").map(|v| v.to_string_lossy().into_owned()),
            endpoint: var("HF_ENDPOINT").map(|v| v.to_string_lossy().into_owned()),
        }
    }

    /// The hub cache directory (it may not exist yet).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if let Some(c) = &self.hf_hub_cache {
            return Some(c.clone());
        }
        if let Some(h) = &self.hf_home {
            return Some(h.join("hub"));
        }
        self.home
            .as_ref()
            .map(|h| h.join(".cache").join("huggingface").join("hub"))
    }

    /// `$HF_HOME`, else `~/.cache/huggingface`: where `huggingface-cli login` keeps the token.
    fn hf_home(&self) -> Option<PathBuf> {
        self.hf_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".cache").join("huggingface")))
    }
}

/// A model directory for `spec`: an existing directory as it is, else a Hugging Face repo id
/// (`owner/name`) from the local cache, downloaded first when missing unless `offline` (or
/// `HF_HUB_OFFLINE=1`).
pub fn resolve_model(spec: &str, offline: bool) -> Result<PathBuf> {
    resolve_model_with(spec, offline, &HubEnv::from_env())
}

/// Where a model spec points: a local directory or file, or a repo id and the cache it
/// belongs in.
enum Located {
    Dir(PathBuf),
    Repo { cache: PathBuf },
}

fn not_found(spec: &str, detail: impl Into<String>) -> Error {
    Error::ModelNotFound {
        spec: spec.to_string(),
        detail: detail.into(),
    }
}

fn locate(spec: &str, env: &HubEnv) -> Result<Located> {
    let path = Path::new(spec);
    // A directory, or a file (a .gguf).
    if path.exists() {
        return Ok(Located::Dir(path.to_path_buf()));
    }
    if !is_repo_id(spec) {
        return Err(not_found(
            spec,
            "no such directory, and not a Hugging Face repo id (owner/name)",
        ));
    }
    let cache = env.cache_dir().ok_or_else(|| {
        not_found(
            spec,
            "no Hugging Face cache directory: set HF_HUB_CACHE, HF_HOME or HOME",
        )
    })?;
    Ok(Located::Repo { cache })
}

/// [`resolve_model`] with an explicit environment.
pub fn resolve_model_with(spec: &str, offline: bool, env: &HubEnv) -> Result<PathBuf> {
    if let Some((repo, tag)) = quant_spec(spec) {
        return resolve_gguf(spec, repo, tag, offline, env);
    }
    let cache = match locate(spec, env)? {
        Located::Dir(d) => return Ok(d),
        Located::Repo { cache } => cache,
    };
    if let Some(snapshot) = find_cached(&cache, spec) {
        return Ok(snapshot);
    }
    let repo_dir = cache.join(repo_folder(spec));
    if offline || env.offline {
        let why = if offline { "--offline" } else { "HF_HUB_OFFLINE" };
        return Err(not_found(
            spec,
            format!(
                "no local directory of that name, and no complete snapshot (config.json + safetensors) \
                 in the Hugging Face cache at {} ({why} forbids downloading). Download it with \
                 `hf download {spec}` (huggingface_hub >= 0.34; older: `huggingface-cli download {spec}`), \
                 which fills the same cache, or run again with network access",
                repo_dir.display()
            ),
        ));
    }
    download(spec, &cache, env)
}

/// A directory holding the `config.json` of `spec` — all `lfm info` reads: a local
/// directory, a cached snapshot (complete or not), or only `config.json` downloaded.
pub fn resolve_config(spec: &str, offline: bool) -> Result<PathBuf> {
    resolve_config_with(spec, offline, &HubEnv::from_env())
}

/// [`resolve_config`] with an explicit environment. A GGUF (`owner/name:TAG`) keeps its
/// config inside the file, so that file is what is found or downloaded.
pub fn resolve_config_with(spec: &str, offline: bool, env: &HubEnv) -> Result<PathBuf> {
    if let Some((repo, tag)) = quant_spec(spec) {
        return resolve_gguf(spec, repo, tag, offline, env);
    }
    let cache = match locate(spec, env)? {
        Located::Dir(d) => return Ok(d),
        Located::Repo { cache } => cache,
    };
    let repo_dir = cache.join(repo_folder(spec));
    let main = std::fs::read_to_string(repo_dir.join("refs").join("main")).ok();
    let mut snapshots: Vec<PathBuf> = main
        .iter()
        .map(|rev| repo_dir.join("snapshots").join(rev.trim()))
        .collect();
    if let Ok(entries) = std::fs::read_dir(repo_dir.join("snapshots")) {
        snapshots.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    if let Some(dir) = snapshots.into_iter().find(|d| d.join("config.json").is_file()) {
        return Ok(dir);
    }
    if offline || env.offline {
        return Err(not_found(
            spec,
            format!(
                "no config.json for it in the Hugging Face cache at {}, and downloading is off",
                repo_dir.display()
            ),
        ));
    }
    download_files(spec, &cache, env, false)
}

/// `owner/name:TAG` (a GGUF repo and a quant tag such as `Q4_K_M`), when `spec` is one and
/// is not a local path.
fn quant_spec(spec: &str) -> Option<(&str, &str)> {
    let (repo, tag) = spec.rsplit_once(':')?;
    let ok = is_repo_id(repo) && !tag.is_empty() && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ok && !Path::new(spec).exists()).then_some((repo, tag))
}

/// The `.gguf` files among `files` whose name ends in the quant `tag`, case-insensitively,
/// after a `-`, `.` or `_` (`LFM2-8B-A1B-Q4_K_M.gguf` for `q4_k_m`), as llama.cpp's
/// `-hf repo:quant` picks them; projector files (`mmproj`) are never picked.
pub fn gguf_matches<'a>(files: &'a [String], tag: &str) -> Vec<&'a str> {
    let tag = tag.to_ascii_lowercase();
    files
        .iter()
        .map(String::as_str)
        .filter(|f| {
            let lower = f.to_ascii_lowercase();
            let Some(stem) = lower.strip_suffix(".gguf") else {
                return false;
            };
            let name = stem.rsplit('/').next().unwrap_or(stem);
            !name.contains("mmproj")
                && name
                    .strip_suffix(tag.as_str())
                    .is_some_and(|head| head.ends_with(['-', '.', '_']))
        })
        .collect()
}

/// The quant tags the `.gguf` files of a repo offer (for error messages).
fn gguf_tags(files: &[String]) -> String {
    let tags: Vec<&str> = files
        .iter()
        .filter_map(|f| f.strip_suffix(".gguf"))
        .filter_map(|f| f.rsplit(['-', '.']).next())
        .collect();
    match tags.is_empty() {
        true => "it has no .gguf files".into(),
        false => format!("it offers {}", tags.join(", ")),
    }
}

/// A GGUF file of `repo` for quant `tag`: from the HF cache (any snapshot), else downloaded
/// into it (resumable, with a progress bar) unless offline.
fn resolve_gguf(spec: &str, repo: &str, tag: &str, offline: bool, env: &HubEnv) -> Result<PathBuf> {
    let cache = env.cache_dir().ok_or_else(|| {
        not_found(
            spec,
            "no Hugging Face cache directory: set HF_HUB_CACHE, HF_HOME or HOME",
        )
    })?;
    let repo_dir = cache.join(repo_folder(repo));
    let mut cached = Vec::new();
    if let Ok(snaps) = std::fs::read_dir(repo_dir.join("snapshots")) {
        for snap in snaps.filter_map(|e| e.ok()).map(|e| e.path()) {
            let names: Vec<String> = std::fs::read_dir(&snap)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            cached.extend(gguf_matches(&names, tag).into_iter().map(|n| snap.join(n)));
        }
    }
    cached.sort();
    if let Some(p) = cached.pop() {
        return Ok(p);
    }
    if offline || env.offline {
        return Err(not_found(
            spec,
            format!(
                "no .gguf for quant {tag} in the Hugging Face cache at {}, and downloading is off; \
                 download it with `hf download {repo} --include \"*{tag}*.gguf\"`",
                repo_dir.display()
            ),
        ));
    }
    let (api, files) = open_repo(repo, &cache, env)?;
    let fail = |file: &str, msg: String| Error::Download {
        repo: repo.to_string(),
        file: file.to_string(),
        msg,
    };
    let matches = gguf_matches(&files, tag);
    let file = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(fail(
                &format!("*{tag}.gguf"),
                format!("no file for quant {tag}; {}", gguf_tags(&files)),
            ))
        }
        many => {
            return Err(fail(
                &format!("*{tag}.gguf"),
                format!(
                    "several files match quant {tag} ({}); split GGUFs are not supported",
                    many.join(", ")
                ),
            ))
        }
    };
    // A name from the repo: checked before it becomes a path.
    crate::files::check_relative_name(Path::new(spec), file)?;
    api.get(file).map_err(|e| fail(file, e.to_string()))
}

/// Whether `spec` looks like `owner/name` (letters, digits, `-`, `_`, `.`; no `..`).
pub fn is_repo_id(spec: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.contains("..")
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(spec.split_once('/'), Some((owner, name)) if ok(owner) && ok(name))
}

/// `models--owner--name`, the cache folder of a model repo.
pub fn repo_folder(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

/// The snapshot directory of `repo_id` in `cache`, if a complete one exists: the `refs/main`
/// revision when complete, else the most recently modified complete snapshot.
pub fn find_cached(cache: &Path, repo_id: &str) -> Option<PathBuf> {
    let repo_dir = cache.join(repo_folder(repo_id));
    let snapshots = repo_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if is_complete(&dir) {
            return Some(dir);
        }
        log::warn!(
            "{}: the refs/main snapshot is incomplete; looking for another",
            dir.display()
        );
    }
    let mut complete: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| is_complete(p))
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    complete.sort();
    complete.pop().map(|(_, p)| p)
}

/// `config.json` plus the weights (single file, or the index and every shard it names).
pub fn is_complete(dir: &Path) -> bool {
    if !dir.join("config.json").is_file() {
        return false;
    }
    if dir.join("model.safetensors").is_file() {
        return true;
    }
    let index = dir.join("model.safetensors.index.json");
    match shard_names(&index) {
        Ok(shards) => shards.iter().all(|s| crate::files::model_file(dir, &index, s).is_ok()),
        Err(_) => false,
    }
}

/// The shard files listed in a `model.safetensors.index.json` (`weight_map` values), each
/// checked to be a plain relative name inside the model directory.
fn shard_names(index: &Path) -> Result<BTreeSet<String>> {
    Ok(crate::model::weights::read_weight_map(index)?.into_values().collect())
}

/// Files fetched besides the weights; only those the repo lists are fetched.
const MODEL_FILES: [&str; 6] = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
];

/// Downloads the files the engine needs from `repo_id` into `cache` (with progress bars) and
/// returns the snapshot directory.
///
/// Which optional files exist is read from the repo's file list (so a missing
/// `generation_config.json` is skipped, never a 404). `hf-hub` downloads into
/// `blobs/<etag>.part` and resumes an interrupted file from where that `.part` file ends,
/// retrying failed transfers; finished files are not fetched again.
pub fn download(repo_id: &str, cache: &Path, env: &HubEnv) -> Result<PathBuf> {
    download_files(repo_id, cache, env, true)
}

/// With `weights` false, only `config.json` (what `lfm info` needs).
/// The hub client for `repo_id` (cache, endpoint, token, retries) and the repo's file list.
fn open_repo(repo_id: &str, cache: &Path, env: &HubEnv) -> Result<(hf_hub::api::sync::ApiRepo, Vec<String>)> {
    use hf_hub::api::sync::ApiBuilder;
    let fail = |file: &str, e: &dyn std::fmt::Display| Error::Download {
        repo: repo_id.to_string(),
        file: file.to_string(),
        msg: e.to_string(),
    };
    let token = env.token.clone().or_else(|| {
        let t = std::fs::read_to_string(env.hf_home()?.join("token")).ok()?;
        Some(t.trim().to_string()).filter(|t| !t.is_empty())
    });
    let mut builder = ApiBuilder::new()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(true)
        .with_retries(5);
    if let Some(endpoint) = &env.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if token.is_some() {
        builder = builder.with_token(token);
    }
    let api = builder.build().map_err(|e| fail("(connection)", &e))?;
    let repo = api.model(repo_id.to_string());
    let info = repo.info().map_err(|e| fail("(file list)", &e))?;
    Ok((repo, info.siblings.into_iter().map(|s| s.rfilename).collect()))
}

fn download_files(repo_id: &str, cache: &Path, env: &HubEnv, weights: bool) -> Result<PathBuf> {
    let fail = |file: &str, e: &dyn std::fmt::Display| Error::Download {
        repo: repo_id.to_string(),
        file: file.to_string(),
        msg: e.to_string(),
    };
    let (repo, files) = open_repo(repo_id, cache, env)?;
    let listed: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    if !listed.contains("config.json") {
        return Err(fail("config.json", &"the repo has no config.json"));
    }

    let get = |file: &str| repo.get(file).map_err(|e| fail(file, &e));
    // The snapshot directory is where config.json lands (files may sit in subfolders).
    let config = get("config.json")?;
    let dir = config
        .parent()
        .ok_or_else(|| fail("config.json", &"the cached file has no directory"))?
        .to_path_buf();
    if !weights {
        return Ok(dir);
    }
    for file in MODEL_FILES.iter().filter(|f| listed.contains(**f)) {
        get(file)?;
    }
    const INDEX: &str = "model.safetensors.index.json";
    if listed.contains(INDEX) {
        let index = get(INDEX)?;
        // Names come from the repo: checked before anything is fetched with them.
        let shards = shard_names(&index).map_err(|e| fail(INDEX, &e))?;
        for shard in &shards {
            get(shard)?;
        }
    } else if listed.contains("model.safetensors") {
        get("model.safetensors")?;
    } else {
        return Err(fail(
            "model.safetensors",
            &"the repo has neither model.safetensors nor model.safetensors.index.json",
        ));
    }
    if !is_complete(&dir) {
        return Err(fail(
            "(snapshot)",
            &format!("{} is incomplete after downloading", dir.display()),
        ));
    }
    Ok(dir)
}
