//! The build identity of the running program: which binary a task was made for.
//!
//! A task names its function by an offset inside one binary (see `process/target.rs`), which
//! means nothing in another build. Each task therefore goes to the stream of its build only, and
//! a node serves the stream of its own build. The identity is the ELF build-id the linker writes
//! into the `.note.gnu.build-id` section (a hash of the linked output, present by default with
//! the GNU and LLVM linkers as Rust drives them on Linux), read from the loaded program (see
//! `sys/host.rs`). A binary without one is identified by the SHA-256 of its file instead.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// How many hex digits of the identity name a build (64 bits: collisions are out of reach).
const BUILD_HEX_DIGITS: usize = 16;

/// This program's build identity, as hex digits (computed once).
pub(crate) fn build_id() -> Result<&'static str> {
    static BUILD: OnceLock<String> = OnceLock::new();
    if let Some(id) = BUILD.get() {
        return Ok(id);
    }
    let bytes = match elf_build_id() {
        Some(bytes) => bytes,
        None => executable_hash()?,
    };
    let mut hex = to_hex(&bytes);
    hex.truncate(BUILD_HEX_DIGITS);
    Ok(BUILD.get_or_init(|| hex))
}

/// Lower-case hex of some bytes.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of the running executable's file.
fn executable_hash() -> Result<Vec<u8>> {
    let mut file = std::fs::File::open("/proc/self/exe")?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(|e| Error::Broker(format!("could not read the executable to identify it: {e}")))?;
    Ok(hasher.finalize().to_vec())
}

/// The build-id note of the main program, if it has one.
fn elf_build_id() -> Option<Vec<u8>> {
    crate::sys::main_program_build_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity is the linker's build-id, as `readelf -n` shows it.
    #[test]
    fn build_id_is_the_elf_note() {
        let id = build_id().unwrap();
        assert_eq!(id.len(), BUILD_HEX_DIGITS);
        let raw = to_hex(&elf_build_id().expect("the test binary has a build-id note"));
        assert!(raw.starts_with(id));
    }
}
