//! Running a client suite: a Python script under `tests/python` (built on
//! `tests/python/suite.py`) that prints one JSON line `{"fn", "ok", "detail"}` per check.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Runs `tests/python/<script>` with `python` and `args`; panics — never skips — when the
/// interpreter is missing, when any check failed, or when other than `checks` checks ran
/// (`log()` is appended to the failure, e.g. the server's log). Returns the checks' lines.
#[track_caller]
pub fn run_suite(
    python: &Path,
    script: &str,
    args: &[&str],
    checks: usize,
    log: &dyn Fn() -> String,
) -> Vec<Value> {
    assert!(
        python.is_file(),
        "{script} needs {}; create it with `bash scripts/pyenv.sh`",
        python.display()
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .env("TQDM_DISABLE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| r["ok"] != Value::Bool(true))
        .collect();
    eprintln!(
        "{script}: {} checks, {} passed, {} failed",
        results.len(),
        results.len() - failed.len(),
        failed.len()
    );
    assert!(
        out.status.success() && failed.is_empty() && results.len() == checks,
        "{script} ({}): {failed:#?}\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    results
}
