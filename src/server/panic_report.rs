//! One log line per panic on a worker thread, with context.
//!
//! Workers catch panics (from an inspector, or a bug in the loop) and keep serving. The default
//! panic hook would print its own unstructured message to stderr *and* we would log the caught
//! panic with its context: two reports, one of them outside the log format. So, on threads that
//! opted in, a hook chained in front of the previous one only records the panic's text (location
//! and message, plus a backtrace when `RUST_BACKTRACE` asks for one); the code that catches the
//! panic logs it once through [`describe`]. Other threads keep the previous hook.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::Cell;
use std::panic;
use std::sync::Once;

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: Cell<Option<String>> = const { Cell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the recording hook (once per process), chained to whatever hook was there.
pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let backtrace = Backtrace::capture();
                let text = match backtrace.status() {
                    BacktraceStatus::Captured => format!("{info}\n{backtrace}"),
                    _ => info.to_string(),
                };
                LAST_PANIC.with(|last| last.set(Some(text)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Makes panics on the calling thread be recorded rather than printed.
pub(crate) fn capture_on_this_thread() {
    CAPTURING.with(|c| c.set(true));
}

/// Text for a caught panic: the recorded location and message when the hook ran on this thread,
/// otherwise the payload's message.
pub(crate) fn describe(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = LAST_PANIC.with(Cell::take) {
        return text.replace('\n', " | ");
    }
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_text_has_location_and_message() {
        install_hook();
        let text = std::thread::spawn(|| {
            capture_on_this_thread();
            let payload = panic::catch_unwind(|| panic!("boom {}", 42)).unwrap_err();
            describe(payload.as_ref())
        })
        .join()
        .unwrap();
        assert!(text.contains("boom 42"), "{text}");
        assert!(text.contains("panic_report.rs"), "{text}");
    }

    #[test]
    fn payload_text_without_the_hook() {
        let payload: Box<dyn Any + Send> = Box::new(String::from("plain"));
        assert_eq!(describe(payload.as_ref()), "plain");
    }
}
