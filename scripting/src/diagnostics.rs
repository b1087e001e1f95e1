//! Script errors for humans: `file:line:column`, the offending line with a caret, the device involved, the
//! chain of function calls — and the run status (exit code) the error maps to.

use std::fmt;
use std::path::PathBuf;

use rhai::{EvalAltResult, ParseError, Position};

use crate::error::{RunStatus, ScanError};
use crate::report::CallSite;

/// Where script text comes from, to quote lines in errors.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Name of the main script (its path as given).
    pub main: String,
    /// Its text.
    pub text: String,
    /// Site library folder for imported modules.
    pub library: Option<PathBuf>,
}

impl Sources {
    fn line(&self, source: &str, line: usize) -> Option<String> {
        let text = if source == self.main {
            self.text.clone()
        } else {
            let dir = self.library.as_ref()?;
            std::fs::read_to_string(dir.join(format!("{source}.rhai"))).ok()?
        };
        text.lines().nth(line.checked_sub(1)?).map(str::to_string)
    }
}

/// A script that stopped with an error, ready to print.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScriptError {
    /// Exit status it maps to.
    pub status: RunStatus,
    /// One-line message.
    pub message: String,
    /// Where it happened.
    pub at: Option<CallSite>,
    /// The offending line of script.
    pub line_text: Option<String>,
    /// The device involved.
    pub device: Option<String>,
    /// Function calls leading to it, innermost last (`function at file:line:col`).
    pub calls: Vec<String>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => writeln!(f, "{at}: {}", self.message)?,
            None => writeln!(f, "{}", self.message)?,
        }
        if let (Some(at), Some(text)) = (&self.at, &self.line_text) {
            let n = at.line.to_string();
            writeln!(f, "{:w$} |", "", w = n.len())?;
            writeln!(f, "{n} | {text}")?;
            writeln!(f, "{:w$} | {:c$}^", "", "", w = n.len(), c = at.column.saturating_sub(1))?;
        }
        if let Some(d) = &self.device {
            writeln!(f, "device: {d}")?;
        }
        for c in self.calls.iter().rev() {
            writeln!(f, "in {c}")?;
        }
        Ok(())
    }
}

fn site(source: &str, pos: Position) -> Option<CallSite> {
    Some(CallSite { source: source.to_string(), line: pos.line()?, column: pos.position().unwrap_or(1) })
}

/// A parse error of the main script.
pub fn parse_error(e: &ParseError, sources: &Sources) -> ScriptError {
    let at = site(&sources.main, e.position());
    ScriptError {
        status: RunStatus::SyntaxError,
        message: format!("syntax error: {}", e.err_type()),
        line_text: at.as_ref().and_then(|a| sources.line(&a.source, a.line)),
        at,
        device: None,
        calls: Vec::new(),
    }
}

/// Explains a runtime error. `fault` is the last primitive error (typed), `limits` the engine limits in
/// force, `devices` the names a script can use for devices (listed when a variable is unknown), `aborted`
/// whether an abort was requested.
pub fn runtime_error(
    err: &EvalAltResult,
    sources: &Sources,
    fault: Option<&ScanError>,
    limits: &crate::config::EngineConfig,
    devices: &[String],
    aborted: bool,
) -> ScriptError {
    let (max_operations, max_memory_mb) = (limits.max_operations, limits.max_memory_mb);
    let mut calls = Vec::new();
    let mut source = sources.main.clone();
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                let at = site(&source, *pos).map_or(String::new(), |a| format!(" at {a}"));
                calls.push(format!("function `{name}` called{at}"));
                if !src.is_empty() {
                    source = src.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, pos) => {
                let at = site(&source, *pos).map_or(String::new(), |a| format!(" at {a}"));
                calls.push(format!("library `{name}` imported{at}"));
                source = name.clone();
                e = inner;
            }
            _ => break,
        }
    }
    let limit_hint = "; if the script really needs more, raise it in the [engine] table of the beamline configuration";
    let (status, message, device) = match e {
        EvalAltResult::ErrorParsing(p, _) => (RunStatus::SyntaxError, format!("syntax error: {p}"), None),
        EvalAltResult::ErrorTooManyOperations(_) => (
            RunStatus::LimitExceeded,
            format!(
                "the script exceeded the operation limit ({max_operations} operations) and was stopped; an endless \
                 loop?{limit_hint}"
            ),
            None,
        ),
        EvalAltResult::ErrorStackOverflow(_) => (
            RunStatus::LimitExceeded,
            format!("the script exceeded the function call depth limit; endless recursion?{limit_hint}"),
            None,
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            (RunStatus::LimitExceeded, format!("{what} exceeds the engine limit{limit_hint}"), None)
        }
        EvalAltResult::ErrorTooManyModules(_) | EvalAltResult::ErrorTooManyVariables(_) => {
            (RunStatus::LimitExceeded, format!("{e}{limit_hint}"), None)
        }
        EvalAltResult::ErrorTerminated(reason, _) if reason.to_string() == crate::memory::STOP_REASON => (
            RunStatus::LimitExceeded,
            format!(
                "the script's data exceeded the memory limit ({max_memory_mb} MiB, [engine] max_memory_mb) and was \
                 stopped; strings, arrays and maps kept in a loop?{limit_hint}"
            ),
            None,
        ),
        EvalAltResult::ErrorTerminated(reason, _) => (RunStatus::Aborted, format!("aborted: {reason}"), None),
        EvalAltResult::ErrorRuntime(msg, _) => {
            let text = msg.to_string();
            match fault.filter(|f| f.to_string() == text) {
                Some(f @ ScanError::Aborted(_)) => (RunStatus::Aborted, f.to_string(), None),
                Some(ScanError::TooLarge(_)) => (RunStatus::LimitExceeded, text, None),
                Some(f) if f.device().is_some() => (RunStatus::DeviceError, text, f.device().map(str::to_string)),
                _ => (RunStatus::ScriptError, text, None),
            }
        }
        EvalAltResult::ErrorFunctionNotFound(sig, _) => (
            RunStatus::ScriptError,
            format!("no function {sig}{} (see scripting/API.md for the scan API; `eval` is disabled)", suggest_fn(sig)),
            None,
        ),
        EvalAltResult::ErrorVariableNotFound(name, _) => {
            let close: Vec<&str> = closest(name, devices.iter().map(String::as_str), 2);
            let hint = match close.first() {
                Some(c) => format!("; did you mean `{c}`?"),
                None => String::new(),
            };
            (RunStatus::ScriptError, format!("unknown variable `{name}`{hint} Devices: {}", devices.join(", ")), None)
        }
        other => (RunStatus::ScriptError, strip_position(&other.to_string()), None),
    };
    let status = if aborted && status != RunStatus::LimitExceeded { RunStatus::Aborted } else { status };
    let at = site(&source, e.position());
    ScriptError {
        status,
        message,
        line_text: at.as_ref().and_then(|a| sources.line(&a.source, a.line)),
        at,
        device,
        calls,
    }
}

/// Rhai appends ` (line L, position P)` to messages; the location is printed separately.
fn strip_position(s: &str) -> String {
    match s.rfind(" (line ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s.to_string(),
    }
}

/// Levenshtein distance (characters), for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The candidates within `max` edits of `name` (or containing it, or contained in it), closest first.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>, max: usize) -> Vec<&'a str> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .filter_map(|c| {
            let d = distance(&lower, &c.to_lowercase());
            let related = c.len() >= 3 && lower.len() >= 3 && (c.contains(lower.as_str()) || lower.contains(c));
            (d <= max || related).then_some((d, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().map(|(_, c)| c).collect()
}

/// The refusal of `--set` names the script never reads (found by the dry run, before anything moves): each
/// unused name with the closest name the script does read, and the list of names it reads.
pub fn unused_params_error(unused: &[String], read: &[String]) -> ScriptError {
    let each: Vec<String> = unused
        .iter()
        .map(|k| match closest(k, read.iter().map(String::as_str), 2).first() {
            Some(c) => format!("--set {k}=... (did you mean `{c}`?)"),
            None => format!("--set {k}=..."),
        })
        .collect();
    let reads =
        if read.is_empty() { "it reads no parameters".to_string() } else { format!("it reads: {}", read.join(", ")) };
    ScriptError {
        status: RunStatus::Failed,
        message: format!(
            "the script never reads {} ({reads}); nothing was moved (fix the name, or drop it)",
            each.join(", ")
        ),
        at: None,
        line_text: None,
        device: None,
        calls: Vec::new(),
    }
}

/// For `no function NAME (TYPES)`: the API's signatures of NAME (wrong arguments), else those of the
/// closest API names.
fn suggest_fn(sig: &str) -> String {
    let name = sig.split([' ', '(']).next().unwrap_or(sig);
    let names = crate::api::SIGNATURES.iter().map(|s| s.split('(').next().unwrap_or(s));
    let mut close = closest(name, names, 2);
    close.truncate(3);
    let shown: Vec<&str> = close
        .iter()
        .flat_map(|c| crate::api::SIGNATURES.iter().copied().filter(move |s| s.split('(').next() == Some(c)))
        .collect();
    if shown.is_empty() {
        return String::new();
    }
    let what = if close.first() == Some(&name) { "expected" } else { "did you mean" };
    format!("; {what}: {}", shown.join(" | "))
}
