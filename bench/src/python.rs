//! Running the Python baselines kept in `bench/python/`.

use std::path::PathBuf;
use std::process::Command;

/// Runs `bench/python/<script>` with `args` under the machine's `python3` and returns the number
/// on its `value=` line.
pub fn run(script: &str, args: &[String]) -> Result<f64, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| format!("could not run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    value(&path, &out.stdout)
}

/// The number on a script's `value=` line.
pub fn value(script: &std::path::Path, stdout: &[u8]) -> Result<f64, String> {
    let stdout = String::from_utf8_lossy(stdout);
    stdout
        .split_whitespace()
        .find_map(|word| word.strip_prefix("value="))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{} printed no value: {stdout}", script.display()))
}
