//! The page's API (`web/`, built with wasm-bindgen): open WebGPU, stream a checkpoint onto
//! the GPU piece by piece, chat with streamed tokens.
//!
//! The weights never sit whole in wasm memory: the page fetches each tensor's byte range
//! (Range requests, or slices of a picked file) as [`Loader::wanted`] asks, and each is
//! uploaded and dropped as it arrives. Everything that waits on the GPU is a Promise.

use crate::chat::{ChatTemplate, Message};
use crate::error::Error;
use crate::gguf::GgufModel;
use crate::gpu::{DType, Gpu, GpuOptions};
use crate::model::config::Config;
use crate::model::gpu_weights::GpuStream;
use crate::model::memory::MemoryEstimate;
use crate::model::session::{Session, SessionOptions};
use crate::model::weights::{Checkpoint, Streamable, StreamedLoad};
use crate::sampling::SamplingParams;
use crate::tokenizer::{ModelFiles, Tokenizer};
use serde_json::{json, Value as Json};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// The message of the last panic: a panic in wasm aborts the call with a bare "unreachable",
/// so the page asks for it ([`Engine::last_panic`]) to say what went wrong.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn js(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

fn parse(name: &str, text: &str) -> Result<Json, JsError> {
    serde_json::from_str(text).map_err(|e| JsError::new(&format!("{name}: not valid JSON: {e}")))
}

/// The browser's WebGPU device.
#[wasm_bindgen]
pub struct Engine {
    gpu: Arc<Gpu>,
}

#[wasm_bindgen]
impl Engine {
    /// Opens the adapter and device; rejects with a message saying what is missing.
    pub async fn open() -> Result<Engine, JsError> {
        std::panic::set_hook(Box::new(|info| {
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(info.to_string());
            }
        }));
        let gpu = Gpu::request(&GpuOptions::default()).await.map_err(|e| {
            JsError::new(&format!(
                "no WebGPU adapter ({e}). Use a browser with WebGPU enabled (Chrome/Edge 113+, \
                 or Chromium with --enable-unsafe-webgpu)"
            ))
        })?;
        Ok(Engine { gpu })
    }

    /// The message of the last panic inside the engine, if any (taken).
    pub fn last_panic() -> Option<String> {
        LAST_PANIC.lock().ok()?.take()
    }

    /// Bytes of wasm linear memory in use (it only grows): the weights never pass through it
    /// whole, so it stays near the largest tensor whatever the model's size.
    pub fn wasm_memory() -> f64 {
        (core::arch::wasm32::memory_size(0) * 65536) as f64
    }

    /// The adapter's name, features and the limits the engine plans with, as JSON.
    pub fn adapter(&self) -> String {
        let (info, l) = (&self.gpu.info, &self.gpu.limits);
        json!({
            "name": info.name,
            "backend": format!("{:?}", info.backend),
            "shader_f16": self.gpu.caps.f16,
            "subgroups": self.gpu.caps.subgroups,
            "timestamps": self.gpu.caps.timestamps,
            "int8_activations": self.gpu.int_dot,
            "max_buffer_size": l.max_buffer_size,
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
        })
        .to_string()
    }

    /// Starts streaming a safetensors checkpoint: `header` holds at least the file's first
    /// 8 + n bytes (its length field and JSON header), `len` is the file's size, `dtype` the
    /// storage of the matrices (f32, f16, q8_0, q4_0; quantized chunk by chunk as they come).
    /// The tokenizer comes with [`Loader::set_tokenizer`].
    pub fn stream_safetensors(
        &self,
        name: &str,
        config_json: &str,
        header: Vec<u8>,
        len: f64,
        dtype: &str,
    ) -> Result<Loader, JsError> {
        let config = Config::from_json(config_json, Path::new("config.json")).map_err(js)?;
        let dtype = DType::parse(dtype).map_err(js)?;
        let ckpt = Checkpoint::streamed(name, config, header, len as u64).map_err(js)?;
        let text = Err("no tokenizer: call set_tokenizer with the model's tokenizer files".into());
        self.loader(Box::new(ckpt), dtype, text)
    }

    /// Starts streaming a GGUF file of `len` bytes whose first bytes are `head`; undefined
    /// when its header runs past `head` (call again with more). Matrices stay in the file's
    /// own block formats; the tokenizer and chat template come from the file.
    pub fn stream_gguf(&self, name: &str, head: Vec<u8>, len: f64) -> Result<Option<Loader>, JsError> {
        let Some(model) = GgufModel::streamed(Path::new(name), head, len as u64).map_err(js)? else {
            return Ok(None);
        };
        // A file without a tokenizer (a synthetic benchmark model) can still be benchmarked;
        // `finish` then says what is missing.
        let text = match model.tokenizer() {
            Ok(tokenizer) => {
                let template = model.chat_template(&tokenizer).map_err(js)?;
                Ok((tokenizer, template.unwrap_or_else(ChatTemplate::builtin)))
            }
            Err(e) => Err(e.to_string()),
        };
        let dtype = model.main_dtype();
        self.loader(Box::new(model), dtype, text).map(Some)
    }

    fn loader(&self, src: Box<dyn Streamable>, dtype: DType, text: Text) -> Result<Loader, JsError> {
        let load = StreamedLoad::new(src).map_err(js)?;
        let estimate =
            MemoryEstimate::for_gpu_source(&self.gpu, load.source(), dtype, DType::F32, 4096, 64).map_err(js)?;
        Ok(Loader {
            stream: Some(GpuStream::new(self.gpu.clone(), load, dtype)),
            weight_bytes: estimate.weights,
            text,
        })
    }
}

/// A checkpoint on its way to the GPU.
#[wasm_bindgen]
pub struct Loader {
    stream: Option<GpuStream>,
    weight_bytes: u64,
    text: Text,
}

/// The tokenizer and chat template, or why there are none.
type Text = Result<(Tokenizer, ChatTemplate), String>;

#[wasm_bindgen]
impl Loader {
    /// The byte ranges the next tensors need, flat as [start, end, start, end, …]; undefined
    /// when every tensor is loaded.
    pub fn wanted(&self) -> Result<Option<Vec<f64>>, JsError> {
        let s = self
            .stream
            .as_ref()
            .ok_or_else(|| JsError::new("the load has finished"))?;
        Ok(s.wanted()
            .map_err(js)?
            .map(|rs| rs.iter().flat_map(|r| [r.start as f64, r.end as f64]).collect()))
    }

    /// Takes `bytes` found at file offset `at`; true when a tensor was uploaded.
    pub fn feed(&mut self, at: f64, bytes: Vec<u8>) -> Result<bool, JsError> {
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| JsError::new("the load has finished"))?;
        s.feed(at as u64, bytes).map_err(js)
    }

    /// [items loaded, items in all, bytes uploaded, bytes in all].
    pub fn progress(&self) -> Vec<f64> {
        let s = self.stream.as_ref();
        let (done, all) = s.map_or((0, 0), GpuStream::progress);
        let bytes = s.map_or(0, GpuStream::uploaded);
        vec![done as f64, all as f64, bytes as f64, self.weight_bytes as f64]
    }

    /// The model's tokenizer and chat template, from its JSON files' texts
    /// (`generation_config` may be empty); a GGUF file brings its own.
    pub fn set_tokenizer(
        &mut self,
        tokenizer_json: &[u8],
        tokenizer_config: &str,
        generation_config: &str,
    ) -> Result<(), JsError> {
        let files = ModelFiles {
            tokenizer_config: Some(parse("tokenizer_config.json", tokenizer_config)?),
            generation_config: match generation_config.trim() {
                "" => None,
                text => Some(parse("generation_config.json", text)?),
            },
            config: None,
        };
        let tokenizer = Tokenizer::from_json(Path::new("tokenizer.json"), tokenizer_json, &files).map_err(js)?;
        let template =
            ChatTemplate::from_files(None, files.tokenizer_config.as_ref(), "tokenizer_config.json").map_err(js)?;
        self.text = Ok((tokenizer, template));
        Ok(())
    }

    /// The name of the storage format of most of the matrices (a GGUF file's main type).
    pub fn dtype(&self) -> String {
        self.stream.as_ref().map_or(String::new(), |s| s.dtype().to_string())
    }

    /// Benchmarks the loaded model without a tokenizer, as `wgpu-bench` does natively: `reps`
    /// times a prefill of `pp` pseudo-random tokens, then `tg` greedy decode steps chained on
    /// the GPU. Resolves to JSON with the tokens/s of each repetition.
    pub fn bench(&mut self, pp: u32, tg: u32, reps: u32) -> Result<js_sys::Promise, JsError> {
        let s = self
            .stream
            .take()
            .ok_or_else(|| JsError::new("the load has finished"))?;
        let model = Arc::new(s.finish().map_err(js)?);
        let vocab = model.cfg.vocab_size as u64;
        let opts = SessionOptions {
            ctx: (pp + tg).max(10) as usize + 1,
            ..Default::default()
        };
        let mut session = Session::new(model, &opts).map_err(js)?;
        // A fixed LCG over the vocabulary: the same prompt every run.
        let ids: Vec<u32> = (0..pp as u64)
            .map(|i| ((i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) >> 33) % vocab) as u32)
            .collect();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            // Warm-up, as natively: the pipelines are compiled on first use.
            session
                .prefill_async(&ids[..ids.len().min(8)], false)
                .await
                .map_err(js)?;
            session.decode_chained_async(2, &mut Vec::new()).await.map_err(js)?;
            let (mut pp_tps, mut tg_tps) = (Vec::new(), Vec::new());
            for _ in 0..reps.max(1) {
                session.reset();
                let t = web_time::Instant::now();
                session.prefill_async(&ids, false).await.map_err(js)?;
                pp_tps.push(pp as f64 / t.elapsed().as_secs_f64());
                let mut out = Vec::new();
                let t = web_time::Instant::now();
                session.decode_chained_async(tg as usize, &mut out).await.map_err(js)?;
                tg_tps.push(tg as f64 / t.elapsed().as_secs_f64());
            }
            let weight_bytes = session.model.weight_bytes;
            Ok(JsValue::from_str(
                &json!({"pp": pp, "tg": tg, "pp_tokens_per_s": pp_tps, "tg_tokens_per_s": tg_tps,
                        "weight_bytes": weight_bytes, "wasm_memory_bytes": Engine::wasm_memory()})
                .to_string(),
            ))
        }))
    }

    /// The loaded model as a chat with a context of `ctx` tokens.
    pub fn finish(&mut self, ctx: u32) -> Result<Chat, JsError> {
        let (tokenizer, template) =
            std::mem::replace(&mut self.text, Err("the load has finished".into())).map_err(|e| JsError::new(&e))?;
        let s = self
            .stream
            .take()
            .ok_or_else(|| JsError::new("the load has finished"))?;
        let model = Arc::new(s.finish().map_err(js)?);
        let opts = SessionOptions {
            ctx: ctx as usize,
            ..Default::default()
        };
        let mut session = Session::new(model, &opts).map_err(js)?;
        let cancel = Arc::new(AtomicBool::new(false));
        session.set_cancel_flag(cancel.clone());
        Ok(Chat {
            inner: Rc::new(RefCell::new(Conversation {
                session,
                tokenizer,
                template,
                messages: Vec::new(),
            })),
            cancel,
        })
    }
}

struct Conversation {
    session: Session,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    messages: Vec<Message>,
}

/// A conversation with a loaded model.
#[wasm_bindgen]
pub struct Chat {
    inner: Rc<RefCell<Conversation>>,
    cancel: Arc<AtomicBool>,
}

#[wasm_bindgen]
impl Chat {
    /// Sampling settings: temperature 0 is greedy; top_k 0 and top_p 1 are off.
    pub fn set_sampling(
        &self,
        temperature: f32,
        top_k: u32,
        top_p: f32,
        min_p: f32,
        repetition_penalty: f32,
        seed: f64,
    ) -> Result<(), JsError> {
        let params = SamplingParams {
            temperature,
            top_k: top_k as usize,
            top_p,
            min_p,
            repetition_penalty,
            seed: seed as u64,
        };
        params.validate().map_err(js)?;
        let mut c = self
            .inner
            .try_borrow_mut()
            .map_err(|_| JsError::new("an answer is being generated"))?;
        c.session.set_sampling(params).map_err(js)
    }

    /// Sends a user message; `on_text` gets each piece of the answer as it is decoded. Resolves
    /// to the statistics as JSON (tokens, time to first token, tokens/s, why it stopped).
    // The borrow is held across the answer's awaits on purpose: a second `send`, `reset` or
    // `set_sampling` meanwhile is refused ("being generated"), never interleaved.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn send(&self, text: String, max_new: u32, on_text: js_sys::Function) -> js_sys::Promise {
        let (inner, cancel) = (self.inner.clone(), self.cancel.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let mut c = inner
                .try_borrow_mut()
                .map_err(|_| JsError::new("an answer is being generated"))?;
            cancel.store(false, Ordering::Relaxed);
            c.answer(text, max_new as usize, &on_text, &cancel)
                .await
                .map_err(JsValue::from)
        })
    }

    /// Stops the answer being generated (it resolves with what was said so far).
    pub fn stop(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Forgets the conversation.
    pub fn reset(&self) -> Result<(), JsError> {
        let mut c = self
            .inner
            .try_borrow_mut()
            .map_err(|_| JsError::new("an answer is being generated"))?;
        c.messages.clear();
        c.session.reset();
        Ok(())
    }
}

impl Conversation {
    async fn answer(
        &mut self,
        text: String,
        max_new: usize,
        on_text: &js_sys::Function,
        cancel: &AtomicBool,
    ) -> Result<JsValue, JsError> {
        self.messages.push(Message::user(text));
        let ids = self
            .template
            .apply(&self.tokenizer, &self.messages, None, true)
            .map_err(js)?;
        let s = &mut self.session;
        let keep = s.reuse_prefix(&ids);
        let (tok, eos) = (&self.tokenizer, self.tokenizer.eos_ids().to_vec());
        let mut stream = tok.stream(true);
        let mut answer = String::new();
        let mut stopped_by_eos = false;
        let mut on_token = |id: u32| {
            if eos.contains(&id) {
                stopped_by_eos = true;
                return false;
            }
            if let Some(piece) = stream.push(id) {
                answer.push_str(&piece);
                let _ = on_text.call1(&JsValue::NULL, &JsValue::from_str(&piece));
            }
            true
        };
        let st = s.generate_async(&ids[keep..], max_new, true, &mut on_token).await;
        let tail = stream.finish();
        if !tail.is_empty() {
            answer.push_str(&tail);
            let _ = on_text.call1(&JsValue::NULL, &JsValue::from_str(&tail));
        }
        let st = match st {
            Ok(st) => st,
            Err(Error::Cancelled) => Default::default(),
            Err(e) => {
                self.messages.pop();
                return Err(js(e));
            }
        };
        self.messages.push(Message::assistant(answer));
        let decoded = st.new_tokens.saturating_sub(1);
        Ok(JsValue::from_str(
            &json!({
                "prompt_tokens": ids.len() - keep,
                "new_tokens": st.new_tokens,
                "time_to_first_token_s": st.prefill_s,
                "decode_tokens_per_s": if st.decode_s > 0.0 { decoded as f64 / st.decode_s } else { 0.0 },
                "stopped": if stopped_by_eos { "eos" } else if st.context_full { "context" } else if cancel.load(Ordering::Relaxed) { "stop" } else { "max_tokens" },
            })
            .to_string(),
        ))
    }
}
