//! Ctrl-C for the whole process, one handler: while something stoppable runs (an answer, a
//! prefill) it only raises [`flag`], which the session checks between chunks and tokens;
//! otherwise — or at a second Ctrl-C before the first was seen — it removes the files being
//! written ([`crate::files::remove_pending`]) and exits with status 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static FLAG: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
static SOFT: AtomicBool = AtomicBool::new(false);

/// Installs the handler (once; later calls do nothing).
#[cfg(not(target_arch = "wasm32"))]
pub fn install() -> crate::Result<()> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        let flag = flag();
        result = ctrlc::set_handler(move || {
            if SOFT.load(Ordering::SeqCst) && !flag.swap(true, Ordering::SeqCst) {
                return;
            }
            crate::files::remove_pending();
            eprintln!();
            std::process::exit(130);
        })
        .map_err(|e| crate::Error::Invalid(format!("installing the Ctrl-C handler: {e}")));
    });
    result
}

/// A web page has no Ctrl-C: its stop button raises [`flag`] itself.
#[cfg(target_arch = "wasm32")]
pub fn install() -> crate::Result<()> {
    Ok(())
}

/// The flag Ctrl-C raises while stoppable (shared with sessions as their cancel flag).
pub fn flag() -> Arc<AtomicBool> {
    FLAG.clone()
}

/// Whether Ctrl-C only raises the flag (`true`) or exits (`false`, the default).
pub fn set_stoppable(soft: bool) {
    SOFT.store(soft, Ordering::SeqCst);
}

/// Whether Ctrl-C was pressed since the last [`clear`].
pub fn requested() -> bool {
    FLAG.load(Ordering::SeqCst)
}

/// Lowers the flag.
pub fn clear() {
    FLAG.store(false, Ordering::SeqCst);
}
