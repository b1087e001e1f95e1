//! The Rhai engine a scan script runs in: limits, `eval` disabled, no file or network access except
//! `import` from the site library folder, abort checked on every operation, `print` to the operator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::module_resolvers::{DummyModuleResolver, FileModuleResolver};
use rhai::{Dynamic, Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use crate::config::EngineConfig;
use crate::session::Session;

/// `import` resolver that only reads `<site library>/<name>.rhai` for plain names (letters, digits, `_`,
/// `-`, and `/` between such segments): no absolute paths, no `..`.
struct SiteLibrary {
    dir: PathBuf,
    files: FileModuleResolver,
}

impl SiteLibrary {
    fn new(dir: &Path) -> SiteLibrary {
        SiteLibrary { dir: dir.to_path_buf(), files: FileModuleResolver::new_with_path(dir) }
    }
}

/// True for library names like `tomo_helpers` or `group/helpers`.
pub fn is_plain_module_name(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

impl ModuleResolver for SiteLibrary {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if !is_plain_module_name(path) {
            return Err(EvalAltResult::ErrorRuntime(
                format!(
                    "import \"{path}\": library names are plain names like \"tomo_helpers\" (letters, digits, _, -, /), \
                     read from the site library {}",
                    self.dir.display()
                )
                .into(),
                pos,
            )
            .into());
        }
        self.files.resolve(engine, source, path, pos)
    }
}

/// Builds the engine for `session` with the configured limits and the whole scan API registered; the
/// returned scope holds the motor constants for the main script.
pub fn build(session: &Arc<Session>, cfg: &EngineConfig) -> (Engine, Scope<'static>) {
    let mut engine = Engine::new();
    engine
        .set_max_operations(cfg.max_operations)
        .set_max_call_levels(cfg.max_call_depth)
        .set_max_string_size(cfg.max_string_size)
        .set_max_array_size(cfg.max_array_size)
        .set_max_map_size(cfg.max_map_size)
        .set_max_expr_depths(128, 64)
        .set_max_modules(64);
    engine.disable_symbol("eval");
    match &cfg.site_library {
        Some(dir) => engine.set_module_resolver(SiteLibrary::new(dir)),
        None => engine.set_module_resolver(DummyModuleResolver::new()),
    };
    let control = session.control.clone();
    let max_memory = usize::try_from(cfg.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    engine.on_progress(move |_ops| {
        if control.is_aborted() {
            return Some(Dynamic::from(control.reason()));
        }
        match crate::memory::in_use() {
            Some(bytes) if bytes > max_memory => Some(Dynamic::from(crate::memory::STOP_REASON)),
            _ => None,
        }
    });
    let s = session.clone();
    engine.on_print(move |text| s.say(text));
    let s = session.clone();
    engine.on_debug(move |text, source, pos| s.say(&format!("[debug {}:{pos}] {text}", source.unwrap_or("<script>"))));
    let mut scope = Scope::new();
    crate::api::register(&mut engine, &mut scope, session);
    (engine, scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_cannot_escape_the_library() {
        assert!(is_plain_module_name("tomo_helpers"));
        assert!(is_plain_module_name("group/scan-lib"));
        for bad in ["../etc/passwd", "/etc/passwd", "a//b", "a/./b", "", "x.rhai/.."] {
            assert!(!is_plain_module_name(bad), "{bad}");
        }
    }
}
